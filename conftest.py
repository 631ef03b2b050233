"""Every test, under tests/ and adapters/*/tests/, gets its own UNIJOB_HOME: job records and local
jobs never touch the user's, and nothing a test started under it outlives the test."""

import os

import pytest

from unijob.testing.jobs import cmdline, processes_under


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own UNIJOB_HOME: records and local jobs never touch the user's."""
    home = tmp_path / "unijob-home"
    monkeypatch.setenv("UNIJOB_HOME", str(home))
    yield home
    # Safety net: nothing a test started under its home outlives it. Job supervisors of tests that
    # do not wait for their job are killed quietly; a router or replica left running is reported
    # (tests that deploy endpoints also assert it themselves).
    served = []
    for pid in processes_under(home):
        argv = cmdline(pid)
        try:
            os.killpg(pid, 9) if os.getpgid(pid) == pid else os.kill(pid, 9)
        except (OSError, ProcessLookupError):
            continue
        if b"unijob.local.router" in argv or b"unijob.serve" in argv:
            served.append(pid)
    if served:
        import warnings

        warnings.warn(f"killed {len(served)} endpoint process(es) left running under {home}: {served}")
