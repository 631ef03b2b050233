"""The job commands end to end on the local target, through the CLI entry point."""

import json
import textwrap
import time

import pytest

from unijob.cli import main
from unijob.records import Records


@pytest.fixture
def spec_file(tmp_path):
    def make(body: str, *, nodes: int = 1, procs: int = 1, extra: str = "") -> str:
        (tmp_path / "train.py").write_text(textwrap.dedent(body))
        p = tmp_path / "job.yaml"
        p.write_text(f"name: clitest\nscript: train.py\nresources: {{nodes: {nodes}, processes_per_node: {procs}}}\n"
                     f"max_run: 2m\n{extra}")
        return str(p)
    return make


def _only_record():
    with Records() as r:
        recs = r.list()
    assert len(recs) == 1
    return recs[0]


def test_submit_wait_success_and_status(spec_file, capsys):
    spec = spec_file("import os; print('hello from', os.environ['RANK'])\n", nodes=2)
    assert main(["submit", spec, "--wait"]) == 0
    rec = _only_record()
    assert rec.state == "SUCCEEDED" and rec.native_id
    assert main(["status", rec.id[:4], "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["state"] == "SUCCEEDED"
    assert main(["logs", rec.id]) == 0
    logs = capsys.readouterr().out
    assert "[rank 0] hello from 0" in logs and "[rank 1] hello from 1" in logs


def test_failed_job_exits_1_with_the_rank_log_tail(spec_file, capsys):
    spec = spec_file("import sys; print('bad input on this rank'); sys.exit(3)\n")
    assert main(["submit", spec, "--wait"]) == 1
    rec = _only_record()
    assert rec.state == "FAILED"
    assert "bad input on this rank" in rec.message


def test_cancel_from_the_cli(spec_file):
    spec = spec_file("import time; time.sleep(60)\n", nodes=2)
    assert main(["submit", spec]) == 0
    rec = _only_record()
    assert main(["cancel", rec.id]) == 0
    deadline = time.time() + 15
    while time.time() < deadline:
        main(["status", rec.id])
        if _only_record().state == "CANCELLED":
            break
        time.sleep(0.3)
    assert _only_record().state == "CANCELLED"
    assert main(["cancel", rec.id]) == 0  # cancelling a finished job is a no-op


def test_same_idempotency_key_never_submits_twice(spec_file, capsys):
    spec = spec_file("print('once')\n")
    assert main(["submit", spec, "--idempotency-key", "k-123"]) == 0
    assert main(["submit", spec, "--idempotency-key", "k-123"]) == 0
    assert "already submitted" in capsys.readouterr().err
    _only_record()


def test_unknown_job_exits_5():
    assert main(["status", "nope"]) == 5


def test_list_json(spec_file, capsys):
    spec = spec_file("print('x')\n")
    assert main(["submit", spec]) == 0
    capsys.readouterr()
    assert main(["list", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["clitest"] and rows[0]["target"] == "local"
