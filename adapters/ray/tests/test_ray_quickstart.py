"""The quickstart on the real Ray cluster, through the CLI: the local target's held-out accuracy; and
with the worker node's raylet killed mid-run and a node added back, the gang is relaunched on a new
placement group, resumes from its checkpoint and ends with the same accuracy, 1 restart shown.

The gang is kept off the head node with ``bundle_resources: {worker: 1}`` (the test cluster's worker
nodes carry that resource), so killing the worker node loses the gang but not the launcher.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"
EPOCHS = 8  # 20 epochs take ~40 s per run on this machine; 8 keep each run short


def _cli(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "unijob"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local_accuracy(tmp_path_factory):
    """The local target's held-out accuracy for the same quickstart (EPOCHS epochs)."""
    work = _copy(tmp_path_factory.mktemp("local"), {})
    env = {**os.environ, "UNIJOB_HOME": str(work.parent / "home")}
    r = _cli("submit", str(work / "job.yaml"), "--wait", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads((work / "output" / "metrics.json").read_text())["held_out_accuracy"]


def _copy(root: Path, ray_opts: dict) -> Path:
    work = root / "quickstart"
    shutil.copytree(QUICKSTART, work, ignore=shutil.ignore_patterns("output", "checkpoints", "__pycache__"))
    spec = yaml.safe_load((QUICKSTART / "job.yaml").read_text())
    spec["hyperparameters"]["epochs"] = EPOCHS
    spec["targets"] = {"ray": ray_opts}
    (work / "job.yaml").write_text(yaml.safe_dump(spec))
    return work


def _wait_final(job_id: str, env: dict, timeout: float = 400) -> tuple[dict, set]:
    states: set = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _cli("status", job_id, "-o", "json", env=env)
        assert st.returncode == 0, st.stderr
        rec = json.loads(st.stdout)
        states.add(rec["state"])
        if rec["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return rec, states
        time.sleep(1)
    pytest.fail(f"{job_id} not final after {timeout} s: {states}")


def test_quickstart_on_ray_matches_the_local_accuracy(ray_opts, local_accuracy, tmp_path):
    work = _copy(tmp_path, ray_opts)
    env = {**os.environ, "UNIJOB_HOME": str(tmp_path / "home")}
    sub = _cli("submit", str(work / "job.yaml"), "-t", "ray", env=env)
    assert sub.returncode == 0, sub.stderr
    job_id = re.search(r"submitted (\S+) to ray", sub.stdout).group(1)
    rec, _ = _wait_final(job_id, env)
    logs = _cli("logs", job_id, env=env).stdout
    assert rec["state"] == "SUCCEEDED", (rec, logs)
    assert f"held-out accuracy: {local_accuracy:.4f}" in logs, logs
    got = json.loads((work / "output" / "metrics.json").read_text())
    assert got["held_out_accuracy"] == local_accuracy and got["resumed_at_epoch"] == 0


@pytest.mark.slow
def test_quickstart_resumes_after_its_node_is_lost(ray_cluster, ray_opts, local_accuracy, tmp_path):
    from ray.job_submission import JobSubmissionClient

    work = _copy(tmp_path, {**ray_opts, "bundle_resources": {"worker": 1}})
    env = {**os.environ, "UNIJOB_HOME": str(tmp_path / "home")}
    sub = _cli("submit", str(work / "job.yaml"), "-t", "ray", env=env)
    assert sub.returncode == 0, sub.stderr
    job_id, native = re.search(r"submitted (\S+) to ray as (\S+)", sub.stdout).groups()
    client = JobSubmissionClient(ray_cluster.address)
    deadline = time.monotonic() + 240
    while not re.search(r"epoch +3/", client.get_job_logs(native)):
        assert time.monotonic() < deadline, client.get_job_logs(native)
        time.sleep(0.3)

    lost = ray_cluster.worker_nodes()
    assert len(lost) == 1
    ray_cluster.kill_node(lost[0])         # the VM is gone: raylet, workers and the rank, SIGKILL
    ray_cluster.add_node()                 # the autoscaler (here: the test) adds a node back

    rec, states = _wait_final(job_id, env)
    logs = _cli("logs", job_id, env=env).stdout
    assert rec["state"] == "SUCCEEDED", (rec, logs)
    assert "RESTARTING" in states or "restart 1/2" in logs, states
    text = _cli("status", job_id, env=env).stdout
    assert re.search(r"^restarts: 1$", text, re.M), text
    assert "of the gang was lost" in logs and "resumed from checkpoint" in logs, logs
    got = json.loads((work / "output" / "metrics.json").read_text())
    assert got["held_out_accuracy"] == local_accuracy and got["resumed_at_epoch"] >= 3, (got, local_accuracy)
