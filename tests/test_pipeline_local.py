"""Pipelines on the local target: the graph checks (errors naming step and field, with the line),
the condition language, and the DAG runner for real (parallel steps, conditions, retries, a
killed runner resumed running only the unfinished steps)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import unijob
from unijob.cli import main
from unijob.errors import SpecError
from unijob.pipeline import expr

STEP = textwrap.dedent("""
    import json, os, sys, time
    from unijob import runtime
    ctx = runtime.context()
    hp = ctx.hyperparameters
    time.sleep(float(hp.get("sleep", 0)))
    if hp.get("fail"):
        print("step failing on purpose", flush=True)
        sys.exit(3)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    (ctx.output_dir / "model.txt").write_text(str(hp.get("value", 0)))
    runtime.log_metrics({"score": float(hp.get("score", 0.5)), "started": time.time()})
""")


def _job(tmp_path: Path, name: str, **hp) -> str:
    (tmp_path / "step.py").write_text(STEP)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "script": "step.py", "hyperparameters": hp, "max_run": 120}))
    return path.name


def _pipeline(tmp_path: Path, steps: list, **params) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "demo", "parameters": params or {"threshold": 0.5}, "steps": steps},
                                   sort_keys=False))
    return str(path)


def test_conditions_parse_and_evaluate():
    t = expr.parse("steps.eval.metrics.acc >= params.min and not (steps.eval.state == 'FAILED')")
    values = {"steps.eval.metrics.acc": 0.97, "params.min": 0.95, "steps.eval.state": "SUCCEEDED"}
    assert expr.evaluate(t, lambda r: values[str(r)]) is True
    assert expr.evaluate(t, lambda r: {**values, "params.min": 0.99}[str(r)]) is False
    for bad in ("", "1 >", "__import__('os')", "os.system('x')", "(1 < 2", "steps.a.metrics", "a ; b"):
        with pytest.raises(expr.ExprError):
            expr.parse(bad)
    with pytest.raises(expr.ExprError, match="cannot compare"):
        expr.evaluate(expr.parse("params.x > 1"), lambda r: "abc")


@pytest.mark.parametrize("steps, loc, words", [
    ([{"name": "a", "job": "a.yaml", "depends_on": ["b"]}, {"name": "b", "job": "a.yaml", "depends_on": ["a"]}],
     "steps.0.depends_on", "cycle: a -> b -> a"),
    ([{"name": "a", "job": "a.yaml"}, {"name": "b", "job": "a.yaml", "depends_on": ["aa"]}],
     "steps.1.depends_on.0", "not a step"),
    ([{"name": "a", "job": "a.yaml"}, {"name": "b", "register": {"model": "{{ steps.a.outputs.modl }}", "name": "m"}}],
     "steps.1.register", "outputs are job_id, model, output"),
    ([{"name": "a", "job": "a.yaml"}, {"name": "b", "job": "a.yaml", "when": "steps.a.metrics.x >"}],
     "steps.1.when", "end of condition"),
    ([{"name": "a", "job": "a.yaml", "with": {"hyperparameters": {"x": "{{ params.nope }}"}}}],
     "steps.0.with", "names no parameter"),
    ([{"name": "a", "job": "missing.yaml"}], "steps.0.job", "no spec file"),
    ([{"name": "a", "job": "a.yaml", "deploy": "a.yaml"}], "steps.0", "exactly one of"),
])
def test_bad_pipelines_name_step_and_field(tmp_path, capsys, steps, loc, words):
    _job(tmp_path, "a")
    path = _pipeline(tmp_path, steps)
    with pytest.raises(SpecError) as e:
        unijob.load_pipeline(path)
    issue = e.value.issues[0]
    assert ".".join(map(str, issue.loc)).startswith(loc) and words in str(e.value), str(e.value)
    assert issue.file == path and issue.line
    assert main(["pipelines", "run", path]) == 2
    assert words in capsys.readouterr().err
    assert unijob.pipeline_runs() == [] and unijob.jobs() == []


def test_dag_runs_parallel_steps_conditions_and_records(tmp_path, capsys):
    steps = [
        {"name": "prep", "job": _job(tmp_path, "prep", value=1)},
        {"name": "left", "job": _job(tmp_path, "left", sleep=2, score=0.9), "depends_on": ["prep"]},
        {"name": "right", "job": _job(tmp_path, "right", sleep=2, score=0.1), "depends_on": ["prep"]},
        {"name": "best", "job": "prep.yaml", "when": "steps.left.metrics.score >= params.threshold",
         "with": {"hyperparameters": {"value": "{{ steps.left.metrics.score }}"}}},
        {"name": "never", "job": "prep.yaml", "when": "steps.right.metrics.score >= params.threshold"},
        {"name": "after-never", "job": "prep.yaml", "depends_on": ["never"]},
    ]
    run = unijob.run_pipeline(_pipeline(tmp_path, steps), wait=True)
    assert run.state == "SUCCEEDED", run.steps
    s = run.steps
    assert [s[n]["state"] for n in ("prep", "left", "right", "best", "never", "after-never")] == \
        ["SUCCEEDED"] * 4 + ["SKIPPED", "SKIPPED"]
    assert "condition false" in s["never"]["message"]
    # left and right ran at the same time
    assert abs(s["left"]["metrics"]["started"] - s["right"]["metrics"]["started"]) < 1.5
    # the template passed left's metric into best's hyperparameters, typed
    assert Path(s["best"]["outputs"]["output"], "model.txt").read_text() == "0.9"
    ids = {j.id for j in unijob.jobs()}
    assert {s[n]["job_id"] for n in ("prep", "left", "right", "best")} <= ids
    assert main(["pipelines", "status", run.id[:10]]) == 0
    assert "never" in capsys.readouterr().out


def test_failed_step_retries_then_fails_downstream(tmp_path):
    steps = [{"name": "flaky", "job": _job(tmp_path, "flaky", fail=True), "retries": 1},
             {"name": "next", "job": _job(tmp_path, "next"), "depends_on": ["flaky"]}]
    run = unijob.run_pipeline(_pipeline(tmp_path, steps), wait=True)
    assert run.state == "FAILED"
    assert run.steps["flaky"]["state"] == "FAILED" and run.steps["flaky"]["attempts"] == 2
    assert "step failing on purpose" in run.steps["flaky"]["message"] or "FAILED" in run.steps["flaky"]["message"]
    assert run.steps["next"]["state"] == "UPSTREAM_FAILED"


def test_killed_runner_resumes_only_unfinished_steps(tmp_path, capsys):
    steps = [{"name": "quick", "job": _job(tmp_path, "quick")},
             {"name": "slow", "job": _job(tmp_path, "slow", sleep=4), "depends_on": ["quick"]},
             {"name": "last", "job": "quick.yaml", "depends_on": ["slow"]}]
    run = unijob.run_pipeline(_pipeline(tmp_path, steps))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.status()
        if run.steps["slow"]["state"] == "RUNNING" and run.steps["slow"].get("job_id"):
            break
        time.sleep(0.2)
    quick_job, slow_job = run.steps["quick"]["job_id"], run.steps["slow"]["job_id"]
    os.kill(run._state["runner_pid"], signal.SIGKILL)  # the runner dies mid-pipeline
    time.sleep(0.5)
    assert run.status().state == "STOPPED"
    assert main(["pipelines", "resume", run.id, "--wait"]) == 0
    run.status()
    assert run.state == "SUCCEEDED"
    assert run.steps["quick"]["job_id"] == quick_job and run.steps["quick"]["attempts"] == 1
    assert run.steps["slow"]["job_id"] == slow_job, "the running step's job was re-attached, not restarted"
    assert run.steps["last"]["state"] == "SUCCEEDED"
    assert len([j for j in unijob.jobs() if j.name == "slow"]) == 1


def test_cancel_stops_running_step_jobs(tmp_path):
    steps = [{"name": "long", "job": _job(tmp_path, "long", sleep=60)}]
    run = unijob.run_pipeline(_pipeline(tmp_path, steps))
    deadline = time.monotonic() + 60
    while run.status().steps["long"].get("job_id") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    run.cancel()
    assert run.state == "CANCELLED" and run.steps["long"]["state"] == "CANCELLED"
    job = unijob.job(run.steps["long"]["job_id"])
    job.wait(timeout=60)
    assert job.state.value == "CANCELLED"
