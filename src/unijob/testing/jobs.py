"""Small helpers for adapter tests that run real jobs (the Slurm and Ray test clusters)."""

from __future__ import annotations

import os
import time
from typing import Any


def spec_with(path: os.PathLike, target: str, options: dict, **updates: Any) -> Any:
    """Load the spec file at ``path`` and give it ``targets.<target>`` = ``options`` (plus field ``updates``)."""
    from unijob.loading import load_spec

    spec = load_spec(path).spec
    return spec.model_copy(update={"targets": {**spec.targets, target: options}, **updates})


def wait_final(adapter: Any, handle: Any, timeout: float = 120.0) -> Any:
    """Poll ``adapter.status(handle)`` every 0.5 s until final; returns the final status.

    Raises:
        AssertionError: not final within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = adapter.status(handle)
        if st.state.is_final:
            return st
        time.sleep(0.5)
    raise AssertionError(f"job {handle.native_id} not final after {timeout} s: {adapter.status(handle)}")


def cmdline(pid: int) -> bytes:
    """``/proc/PID/cmdline`` (NUL-separated argv), or ``b""`` for a process that is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_under(home: os.PathLike) -> list[int]:
    """Pids of live processes whose environment holds ``UNIJOB_HOME=home`` (job supervisors, routers,
    and the replicas they start inherit it); the calling process and multiprocessing's resource
    tracker excluded. Linux only (reads ``/proc``)."""
    from unijob.local import jobdir as jd

    needle = f"UNIJOB_HOME={home}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env and jd.alive(int(entry)) and b"resource_tracker" not in cmdline(int(entry)):
            pids.append(int(entry))
    return pids
