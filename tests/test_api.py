"""unijob as a library, on the local target: load, plan, submit, job(s), wait, logs, cancel, deploy."""

import subprocess
import sys
import textwrap

import pytest

import unijob
from unijob.errors import NotFound, SpecError, UsageError


@pytest.fixture
def project(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent("""\
        import os, sys, time
        print("rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"])
        if os.environ.get("SLEEP"):
            time.sleep(float(os.environ["SLEEP"]))
        sys.exit(int(os.environ.get("EXIT", "0")))
    """))
    (tmp_path / "job.yaml").write_text("name: apitest\nscript: train.py\nresources: {nodes: 2}\nmax_run: 2m\n")
    return tmp_path


def test_import_is_cheap_and_names_load_lazily():
    code = ("import sys, unijob; heavy = {'pydantic', 'click', 'yaml', 'unijob.api'} & set(sys.modules); "
            "assert not heavy, heavy; "
            "assert callable(unijob.submit) and unijob.JobState.SUCCEEDED.is_final and 'pydantic' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(AttributeError, match="no attribute 'sbumit'"):
        unijob.sbumit  # noqa: B018
    assert {"load", "plan", "submit", "job", "jobs", "deploy", "endpoint", "cost", "breakeven"} <= set(dir(unijob))


def test_submit_wait_logs_and_find_again(project):
    spec = unijob.load(project / "job.yaml")
    job = unijob.submit(spec, wait=True)
    assert isinstance(job, unijob.Job) and job.target == "local" and job.native_id
    assert job.state is unijob.JobState.SUCCEEDED and job.restarts == 0
    lines = list(job.logs())
    assert "[rank 0] rank 0 of 2" in lines and "[rank 1] rank 1 of 2" in lines
    again = unijob.job(job.id[:5])
    assert (again.id, again.state, again.native_id) == (job.id, job.state, job.native_id)
    assert unijob.job(job.native_id).id == job.id
    assert [j.id for j in unijob.jobs(target="local")] == [job.id]
    assert unijob.jobs(target="sagemaker") == []


def test_a_spec_built_in_python_runs_the_same(project, monkeypatch):
    monkeypatch.chdir(project)
    spec = unijob.JobSpec(name="inpython", script="train.py", env={"EXIT": "3"})
    job = unijob.submit(spec)
    assert job.state in (unijob.JobState.QUEUED, unijob.JobState.RUNNING, unijob.JobState.STARTING)
    assert job.wait(timeout=60) is unijob.JobState.FAILED
    assert job.status(refresh=False).state is unijob.JobState.FAILED
    assert "exit" in job.message.lower() or "3" in job.message


def test_wait_times_out_and_cancel_stops_the_gang(project):
    spec = unijob.load(project / "job.yaml")
    spec.env["SLEEP"] = "60"
    job = unijob.submit(spec)
    with pytest.raises(TimeoutError, match=job.id):
        job.wait(timeout=0.5, interval=0.1)
    assert job.cancel() in (unijob.JobState.CANCELLED, unijob.JobState.STOPPING)
    assert job.wait(timeout=30) is unijob.JobState.CANCELLED


def test_same_idempotency_key_returns_the_first_job(project):
    first = unijob.submit(project / "job.yaml", idempotency_key="k-1", wait=True)
    second = unijob.submit(project / "job.yaml", idempotency_key="k-1")
    assert second.id == first.id and second.already_submitted and "already submitted" in second.notes[0]
    assert len(unijob.jobs()) == 1


def test_dry_run_records_nothing_and_returns_the_plan(project):
    plan = unijob.submit(project / "job.yaml", dry_run=True)
    assert isinstance(plan, unijob.Plan) and plan.extra["dry_run"] is True
    assert unijob.jobs() == []


def test_plan_errors_point_at_the_file_line(project, monkeypatch):
    (project / "job.yaml").write_text("name: apitest\nscript: train.py\ntargets:\n  local:\n    simulate_preemption: 5s\n")
    with pytest.raises(SpecError) as e:
        unijob.plan(project / "job.yaml")
    assert "job.yaml:5" in str(e.value) and "simulate_preemption" in str(e.value)
    monkeypatch.chdir(project)
    spec = unijob.JobSpec(name="x", script="train.py", targets={"local": {"pyhton": "python3"}})
    with pytest.raises(SpecError, match="targets.local.pyhton: unknown field"):
        unijob.plan(spec)


def test_plan_is_pure_and_reproducible(project):
    a, b = unijob.plan(project / "job.yaml"), unijob.plan(unijob.load(project / "job.yaml"))
    assert a.model_dump() == b.model_dump() and a.target == "local" and a.kind == "job"
    assert unijob.jobs() == []


def test_unknown_job_and_endpoint(project):
    with pytest.raises(NotFound):
        unijob.job("nope")
    with pytest.raises(NotFound):
        unijob.endpoint("nope")


def test_deploy_invoke_traffic_undeploy(tmp_path, endpoint_project, live_processes, _isolated_home):
    ep = unijob.deploy(endpoint_project(tmp_path))
    try:
        assert (ep.name, ep.target) == ("digits", "local")
        answer = unijob.endpoint("digits").invoke([1, 2], variant="green")
        assert answer.variant == "green" and answer.predictions[0]["model"] == "green-model"
        blue = ep.invoke(body={"instances": [3]}, variant="blue").predictions[0]
        assert (blue["x"], blue["model"]) == (3, "blue-model")
        with pytest.raises(UsageError, match="sum to 100"):
            ep.set_traffic({"blue": 50, "green": 40})
        assert ep.set_traffic({"blue": 0, "green": 100}) == {"blue": 0, "green": 100}
        assert {ep.invoke([i]).variant for i in range(5)} == {"green"}
        st = ep.status()
        assert st.traffic == {"blue": 0, "green": 100}
        assert [e.name for e in unijob.endpoints()] == ["digits"]
    finally:
        ep.undeploy()
    assert unijob.endpoints() == [] and live_processes(_isolated_home) == []


def test_the_readme_python_api_example_runs_on_local(tmp_path, monkeypatch, live_processes, _isolated_home):
    """The README's notebook example, as written, on a copy of examples/quickstart (3 epochs)."""
    pytest.importorskip("sklearn")
    import re
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    code = re.search(r"## Python API\n.*?```python\n(.*?)```", readme, re.S).group(1)
    shutil.copytree(root / "examples", tmp_path / "examples")
    job_yaml = tmp_path / "examples" / "quickstart" / "job.yaml"
    job_yaml.write_text(job_yaml.read_text().replace("epochs: 20", "epochs: 3"))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        for ep in unijob.endpoints():
            ep.undeploy()
    assert scope["job"].state is unijob.JobState.SUCCEEDED
    assert scope["ep"].state == "DELETED" and live_processes(_isolated_home) == []
