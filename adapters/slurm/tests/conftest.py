"""Fixtures: one real Slurm cluster for the whole test run (munge, slurmctld, two slurmd on
127.0.0.1), a job Python without unijob, and a real sshd on 127.0.0.1 with a throwaway key.

Tests that need the cluster skip with the reason when ``slurm-wlm``/``munge`` (or
``openssh-server``) are not installed; ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from unijob_adapters.slurm.testing import SlurmTestCluster, free_port, missing_binaries

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def slurm_cluster():
    """The session's Slurm cluster (started once, stopped by PID at the end)."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root (SlurmUser=root)")
    root = Path(tempfile.mkdtemp(prefix="ujslurm-"))
    cluster = SlurmTestCluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def job_python(tmp_path_factory):
    """A Python like a cluster's: a fresh venv with no unijob (the runtime comes from the wheel)."""
    from unijob.testing.contracts import job_python as make

    return make(tmp_path_factory.mktemp("jobpy"))


@pytest.fixture
def slurm_opts(slurm_cluster, job_python, tmp_path_factory):
    """``targets.slurm`` for the test cluster: a staging dir shared by the session's jobs."""
    staging = tmp_path_factory.getbasetemp() / "slurm-staging"
    return {"staging_dir": str(staging), "python": str(job_python), "spot_partition": "spot",
            "grace_seconds": 8}


@pytest.fixture
def adapter(slurm_cluster):
    from unijob_adapters.slurm.adapter import SlurmAdapter

    return SlurmAdapter(env=slurm_cluster.env, poll_interval=0.5)


@pytest.fixture(scope="session")
def sshd(slurm_cluster, tmp_path_factory):
    """A real sshd on 127.0.0.1 (a free port) accepting a throwaway key for root; its sessions get
    the test cluster's ``SLURM_CONF``. Yields the ``targets.slurm`` ssh options."""
    sshd_bin = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if not sshd_bin or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server / openssh-client are not installed: apt-get install openssh-server")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_port()
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory (Debian)
    cfg = d / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        f"SetEnv SLURM_CONF={slurm_cluster.conf}", f"Subsystem sftp internal-sftp", ""]))
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(cfg)], stdout=open(d / "sshd.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    opts = {"login": "root@127.0.0.1", "ssh_port": port, "ssh_identity": str(d / "client"),
            "ssh_options": [f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=yes"]}
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("sshd exited:\n" + (d / "sshd.log").read_text())
            probe = subprocess.run(["ssh", "-o", "BatchMode=yes", "-p", str(port), "-i", str(d / "client"),
                                    "-o", f"UserKnownHostsFile={d / 'known_hosts'}", "root@127.0.0.1", "true"],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("sshd did not accept the key:\n" + (d / "sshd.log").read_text())
        yield opts
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

