"""Batch prediction on the local target: unijob.batch.runner for real (a pool of processes), through
`unijob batch` and unijob.batch_predict, with status/logs/list as for jobs."""

import json
import textwrap
from pathlib import Path

import pytest

import unijob
from unijob.batch.runner import run
from unijob.cli import main
from unijob.errors import SpecError

HANDLER = textwrap.dedent("""
    import os, time

    class Doubler:
        def load(self, model_dir):
            self.k = int((model_dir / "k.txt").read_text()) if model_dir else 2
            self.pid = os.getpid()

        def predict(self, instances, parameters):
            time.sleep(0.05)  # a chunk takes a while, so both workers of the pool get some
            if any(x == "boom" for x in instances):
                raise ValueError("cannot predict 'boom'")
            return [{"y": x * self.k + parameters.get("bias", 0), "pid": self.pid} for x in instances]
""")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "k.txt").write_text("3")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    with open(data / "a.jsonl", "w") as f:
        for i in range(500):
            f.write(json.dumps({"key": f"a{i}", "instance": i}) + "\n")
    with open(data / "sub" / "b.jsonl", "w") as f:
        f.write("1\n\n2\nnot json\n\"boom\"\n4\n")
    return tmp_path


def _config(project, **over):
    c = {"handler": "handler.py:Doubler", "base_dir": str(project), "model": str(project / "model"),
         "input": str(project / "data"), "output": str(project / "out"), "replicas": 2,
         "instances_per_request": 16, "max_error_fraction": 0.01, "parameters": {"bias": 1}}
    c.update(over)
    return c


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_runner_keeps_order_keys_and_line_numbers(project):
    summary = run(_config(project))
    a = _lines(project / "out" / "a.jsonl.out")
    assert [r["key"] for r in a] == [f"a{i}" for i in range(500)]
    assert [r["prediction"]["y"] for r in a] == [i * 3 + 1 for i in range(500)]
    assert len({r["prediction"]["pid"] for r in a}) == 2, "both worker processes served chunks"
    b = _lines(project / "out" / "sub" / "b.jsonl.out")
    assert [r.get("prediction", {}).get("y") for r in b] == [4, 7, None, None, 13]
    assert (b[2]["line"], b[3]["line"]) == (4, 5) and "not JSON" in b[2]["error"] and "boom" in b[3]["error"]
    errors = _lines(project / "out" / "errors.jsonl")
    assert [(e["file"], e["line"]) for e in errors] == [("sub/b.jsonl", 4), ("sub/b.jsonl", 5)]
    assert summary["lines"] == 505 and summary["errors"] == 2 and summary["within_budget"] is True
    assert json.loads((project / "out" / "_SUMMARY.json").read_text())["predictions"] == 503


def test_runner_single_process_gives_the_same_predictions(project):
    run(_config(project, replicas=1, output=str(project / "one")))
    run(_config(project, replicas=2, output=str(project / "two")))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "prediction"} | {"y": r.get("prediction", {}).get("y")}
                          for r in rows]  # noqa: E731
    assert strip(_lines(project / "one" / "a.jsonl.out")) == strip(_lines(project / "two" / "a.jsonl.out"))


def _spec(project, **batch):
    b = {"handler": "handler.py:Doubler", "model": "./model", "input": "./data", "output": "./out", "replicas": 2,
         "instances_per_request": 32, "max_error_fraction": 0.01}
    b.update(batch)
    import yaml

    path = project / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "doubler", "batch": b}))
    return str(path)


def test_cli_batch_runs_as_a_job(project, capsys):
    spec = _spec(project)
    assert main(["plan", spec, "--batch", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kind"] == "batch" and "unijob.batch.runner" in plan["requests"][0]["body"]["argv"]
    assert main(["batch", spec, "--wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted batch" in out and "SUCCEEDED" in out
    assert len(_lines(project / "out" / "a.jsonl.out")) == 500
    job = unijob.jobs()[0]
    assert job.name == "doubler" and job.state.value == "SUCCEEDED"
    assert any("503 predictions, 2 errors in 505 lines" in line for line in job.logs())


def test_error_budget_fails_the_job_with_the_reason(project, capsys):
    job = unijob.batch_predict(_spec(project, max_error_fraction=0.0), wait=True)
    assert job.state.value == "FAILED"
    assert "error budget" in job.message and "errors.jsonl" in job.message
    # the other lines were still predicted
    assert len(_lines(project / "out" / "a.jsonl.out")) == 500


def test_bad_batch_sections_are_spec_errors(project, capsys):
    assert main(["batch", _spec(project, handler=None)]) == 2
    assert "handler" in capsys.readouterr().err
    with pytest.raises(SpecError, match="runs no containers"):
        unijob.plan(_spec(project, handler=None, image="x:1"), batch=True)
    with pytest.raises(SpecError, match="no batch section"):
        unijob.plan(str(Path(__file__).parents[1] / "examples" / "quickstart" / "job.yaml"), batch=True)
    assert main(["batch", _spec(project, input="./missing"), "--wait"]) == 1
    assert "does not exist" in unijob.jobs()[0].message
