"""unijob.testing.contracts.hosts_entries: names resolve while the block runs, and the hosts file
comes back byte for byte, keeping lines others added meanwhile."""

import os
import socket

import pytest

from unijob.testing.contracts import HOSTS_FILE, hosts_entries


@pytest.mark.parametrize("original", [b"127.0.0.1 localhost\n", b"127.0.0.1 localhost"])
def test_adds_one_line_and_removes_exactly_it(tmp_path, original):
    f = tmp_path / "hosts"
    f.write_bytes(original)
    with hosts_entries(["job-0.job", "job-1.job", "job-0.job"], hosts_file=f) as ok:
        assert ok
        lines = f.read_text().splitlines()
        assert lines[0] == "127.0.0.1 localhost"
        assert lines[1].startswith("127.0.0.1 job-0.job job-1.job # unijob.testing ")
        with open(f, "a") as other:  # another runner's line, added meanwhile, survives
            other.write("127.0.0.1 algo-1\n")
    assert f.read_bytes() == original.rstrip(b"\n") + b"\n127.0.0.1 algo-1\n"


def test_system_resolver_sees_the_names():
    if not os.access(HOSTS_FILE, os.W_OK):
        pytest.skip(f"{HOSTS_FILE} is not writable (not root)")
    before = HOSTS_FILE.read_bytes()
    with hosts_entries(["unijob-hosts-test-0.unijob-hosts-test"]) as ok:
        assert ok
        assert socket.gethostbyname("unijob-hosts-test-0.unijob-hosts-test") == "127.0.0.1"
    assert HOSTS_FILE.read_bytes() == before
