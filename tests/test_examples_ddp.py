"""examples/ddp: 4 ranks (2 nodes x 2 processes) join a gloo group through unijob.runtime.context(),
all-reduce, train with DDP, checkpoint on rank 0, and resume after a restart.

Runs when torch is importable; skips otherwise (the default install does not pull torch). To run it
against another interpreter that has torch: ``UNIJOB_TORCH_PYTHON=/path/to/python pytest ...``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ddp" / "train_ddp.py"
NODES, PER_NODE = 2, 2


def _python() -> str:
    other = os.environ.get("UNIJOB_TORCH_PYTHON")
    if other:
        return other
    pytest.importorskip("torch")
    return sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gang(python: str, tmp: Path, restart: int, epochs: int) -> list[subprocess.CompletedProcess]:
    """Launch the ranks the way the local target does: one process per rank, torchrun's env."""
    world = NODES * PER_NODE
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
        env.update({
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", ""),
            "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank % PER_NODE),
            "LOCAL_WORLD_SIZE": str(PER_NODE), "NODE_RANK": str(rank // PER_NODE), "GROUP_RANK": str(rank // PER_NODE),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "UNIJOB_NODES": str(NODES),
            "UNIJOB_JOB_ID": "ddp-test", "UNIJOB_RESTART_COUNT": str(restart),
            "UNIJOB_CHECKPOINT_DIR": str(tmp / "checkpoints"), "UNIJOB_OUTPUT_DIR": str(tmp / "output"),
            "UNIJOB_HYPERPARAMETERS": json.dumps({"epochs": epochs, "lr": 0.1, "seed": 0}),
        })
        procs.append(subprocess.Popen([python, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=240)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, ""))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


@pytest.mark.torch
@pytest.mark.slow
def test_ddp_gang_trains_checkpoints_and_resumes(tmp_path):
    python = _python()
    first = _gang(python, tmp_path, restart=0, epochs=2)
    assert [r.returncode for r in first] == [0] * 4, "\n".join(f"rank {i}:\n{r.stdout}" for i, r in enumerate(first))
    for rank, r in enumerate(first):
        assert f"[rank {rank}/4 node {rank // 2} local {rank % 2}] all-reduce ok: 10" in r.stdout
    assert "replicas identical" in first[0].stdout
    ckpt_dir = tmp_path / "checkpoints" / "ddp-test"
    assert sorted(os.listdir(ckpt_dir)) == ["step-000000000000", "step-000000000001"]  # rank 0 only, keep=2

    # a relaunch of the same job with more epochs resumes after epoch 2 instead of starting over
    second = _gang(python, tmp_path, restart=1, epochs=4)
    assert [r.returncode for r in second] == [0] * 4, "\n".join(f"rank {i}:\n{r.stdout}" for i, r in enumerate(second))
    out = second[0].stdout
    assert "resumed from checkpoint: epoch 2 done (restart 1)" in out
    assert "epoch 1/4" not in out and "epoch 3/4" in out and "epoch 4/4" in out
    final = [line for line in out.splitlines() if line.startswith("final:")][0]
    w, b = float(final.split()[2]), float(final.split()[4])
    assert abs(w - 3) < 0.1 and abs(b + 2) < 0.1
    assert (tmp_path / "output" / "model.pt").exists()
    assert sorted(os.listdir(ckpt_dir)) == ["step-000000000002", "step-000000000003"]
