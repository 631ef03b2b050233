"""The quickstart trains a real model and resumes after a real SIGTERM to the same result."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

TRAIN = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "train.py"
EPOCHS = 8


def _env(tmp: Path, job_id: str, restart: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
    env.update({
        "UNIJOB_JOB_ID": job_id, "UNIJOB_TARGET": "local", "UNIJOB_RESTART_COUNT": str(restart),
        "UNIJOB_CHECKPOINT_DIR": str(tmp / "checkpoints"), "UNIJOB_OUTPUT_DIR": str(tmp / "output" / job_id),
        "UNIJOB_HYPERPARAMETERS": json.dumps({"epochs": EPOCHS, "learning_rate": 0.001, "seed": 7}),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _accuracy(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("held-out accuracy:")]
    assert len(lines) == 1, out
    return lines[0].split(":")[1].strip()


def _weights(tmp: Path, job_id: str) -> list[np.ndarray]:
    model = pickle.loads((tmp / "output" / job_id / "model.pkl").read_bytes())
    return [*model.coefs_, *model.intercepts_]


@pytest.mark.slow
def test_preempted_run_resumes_to_the_same_model(tmp_path):
    plain = subprocess.run([sys.executable, str(TRAIN)], env=_env(tmp_path, "uninterrupted"),
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "training from scratch" in plain.stdout and f"epoch   {EPOCHS}/{EPOCHS}" in plain.stdout
    acc = _accuracy(plain.stdout)
    assert float(acc) > 0.9  # a real model on real data, not a constant

    # The same job, preempted: SIGTERM once epoch 3 is done, as the local target's notice would.
    proc = subprocess.Popen([sys.executable, str(TRAIN)], env=_env(tmp_path, "preempted"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(f"epoch   3/{EPOCHS}"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = "".join(seen) + rest
    assert proc.returncode == 143, first + err
    assert "preempted: checkpoint of epoch" in first and "held-out accuracy" not in first
    stopped_after = int(first.split("preempted: checkpoint of epoch ")[1].split()[0])
    assert 3 <= stopped_after < EPOCHS

    resumed = subprocess.run([sys.executable, str(TRAIN)], env=_env(tmp_path, "preempted", restart=1),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from checkpoint: epoch {stopped_after}/{EPOCHS} done (restart 1)" in resumed.stdout
    assert "training from scratch" not in resumed.stdout and "epoch   1/" not in resumed.stdout
    assert _accuracy(resumed.stdout) == acc
    for a, b in zip(_weights(tmp_path, "uninterrupted"), _weights(tmp_path, "preempted")):
        assert np.array_equal(a, b)
    metrics = json.loads((tmp_path / "output" / "preempted" / "metrics.json").read_text())
    assert metrics["resumed_at_epoch"] == stopped_after
    # each job keeps its own checkpoints (<dir>/<job id>), the last 3
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["preempted", "uninterrupted"]
    assert len(os.listdir(tmp_path / "checkpoints" / "preempted")) == 3


def test_plain_python_runs_as_one_process_without_a_checkpoint_location(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
    env["UNIJOB_HYPERPARAMETERS"] = json.dumps({"epochs": 1})
    out = subprocess.run([sys.executable, str(TRAIN)], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert float(_accuracy(out.stdout)) > 0.5
    assert (tmp_path / "output" / "model.pkl").exists()


def test_example_specs_validate_and_plan_locally():
    from unijob import registry
    from unijob.loading import load_spec

    root = Path(__file__).resolve().parents[1] / "examples"
    qs = load_spec(root / "quickstart" / "job.yaml").spec
    assert qs.name == "quickstart" and qs.script == "train.py" and qs.max_run == 600
    assert qs.spot.policy == "spot" and qs.spot.max_restarts == 2
    assert set(qs.hyperparameters) == {"epochs", "learning_rate", "seed"}
    assert "scikit-learn" in (root / "quickstart" / qs.requirements).read_text()
    ddp = load_spec(root / "ddp" / "job.yaml").spec
    assert (ddp.resources.nodes, ddp.resources.processes_per_node, ddp.resources.world_size) == (2, 2, 4)
    plan = registry.get("local").plan(qs, "sub-test")
    env = json.dumps(plan.model_dump())
    assert "UNIJOB_CHECKPOINT_DIR" in env and "UNIJOB_HYPERPARAMETERS" in env
