"""The local adapter against the shared conformance suite, plus its plan-time rules."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from unijob.errors import SpecError
from unijob.local.adapter import LocalAdapter
from unijob.local import jobdir as jd
from unijob.spec import JobSpec
from unijob.testing.conformance import SECRET_ENV, AdapterConformance

SCRIPT = """\
import os, time
print("conformance job up, rank", os.environ["RANK"], flush=True)
time.sleep(float(os.environ.get("SLEEP", "3")))
"""


def make_spec(base: Path, **over) -> JobSpec:
    (base / "train.py").write_text(SCRIPT)
    data = {"name": "conf", "script": "train.py", "secrets": {"API_TOKEN": f"env://{SECRET_ENV}"},
            "env": {"SLEEP": "3"}, **over}
    return JobSpec.model_validate(data, context={"base_dir": base})


def stop_everything(home: Path) -> None:
    """Cancel every job under ``home`` and check no supervisor or rank is left running."""
    a = LocalAdapter()
    jobs = home / "local" / "jobs"
    for d in sorted(jobs.iterdir()) if jobs.exists() else []:
        if (d / "plan.json").exists():
            from unijob.contract import JobHandle

            a.cancel(JobHandle(target="local", native_id=d.name, extra={"job_dir": str(d)}), wait=15)
        pid = jd.read_pid(d)
        deadline = time.monotonic() + 5  # it exits just after writing the final state
        while pid and jd.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (pid and jd.alive(pid)), f"supervisor of {d.name} still running"
        for r in (jd.read_json(d / "state.json") or {}).get("ranks", []):
            if r.get("pid") and jd.alive(r["pid"], r.get("start_time")):
                os.killpg(r["pgid"], signal.SIGKILL)
                raise AssertionError(f"rank {r['rank']} of {d.name} outlived its job")


@pytest.fixture(autouse=True)
def local_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("UNIJOB_HOME", str(home))
    yield home
    stop_everything(home)


class TestLocalConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self):
        return LocalAdapter()

    @pytest.fixture
    def job_spec(self, tmp_path):
        return make_spec(tmp_path)

    @pytest.fixture
    def endpoint_spec(self, tmp_path, endpoint_project):
        from unijob.loading import load_spec

        return load_spec(str(endpoint_project(tmp_path))).spec

    @pytest.fixture
    def invoke_payload(self):
        return {"instances": [1, 2]}

    @pytest.fixture
    def leftover_endpoint_resources(self, local_home, live_processes):
        return lambda: len(live_processes(local_home))

    @pytest.fixture
    def created_jobs(self, local_home):
        jobs = local_home / "local" / "jobs"
        return lambda: len([d for d in jobs.iterdir() if d.is_dir()]) if jobs.exists() else 0


def test_plan_carries_the_env_contract(tmp_path, local_home):
    (tmp_path / "data").mkdir()
    spec = make_spec(tmp_path, inputs={"train": "data", "remote": "s3://bucket/x", "f": f"file://{tmp_path}/data"},
                     hyperparameters={"lr": 0.1, "epochs": 3, "fast": True},
                     checkpoint={"uri": "file://ckpt"}, output="out",
                     secrets={"API_TOKEN": f"env://{SECRET_ENV}", "DB": "aws-secretsmanager://db#pw"},
                     resources={"nodes": 2, "processes_per_node": 3})
    plan = LocalAdapter().plan(spec, "sub-x")
    body = plan.request("local:launch").body
    env = body["env"]
    assert plan.name == body["env"]["UNIJOB_JOB_ID"] and plan.name.startswith("conf-")
    assert (body["nodes"], body["processes_per_node"], body["world_size"]) == (2, 3, 6)
    assert env["UNIJOB_TARGET"] == "local"
    assert json.loads(env["UNIJOB_CHANNELS"]) == {"train": str(tmp_path / "data"), "remote": "s3://bucket/x",
                                                  "f": str(tmp_path / "data")}
    assert json.loads(env["UNIJOB_HYPERPARAMETERS"]) == {"lr": 0.1, "epochs": 3, "fast": True}
    assert env["UNIJOB_CHECKPOINT_URI"] == env["UNIJOB_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
    assert env["UNIJOB_OUTPUT_URI"] == env["UNIJOB_OUTPUT_DIR"] == str(tmp_path / "out")
    assert env["UNIJOB_NODES"] == "2"
    assert json.loads(env["UNIJOB_SECRET_REFS"]) == {"DB": "aws-secretsmanager://db#pw"}
    assert "API_TOKEN" not in env and body["secret_refs"]["API_TOKEN"] == f"env://{SECRET_ENV}"
    assert body["job_dir"] == str(local_home / "local" / "jobs" / plan.name)
    assert not local_home.exists(), "plan() must not create anything"
    assert plan.resources.service == "local" and plan.resources.instance_count == 2


def test_default_output_is_in_the_job_dir(tmp_path, local_home):
    body = LocalAdapter().plan(make_spec(tmp_path), "s").request("local:launch").body
    assert body["env"]["UNIJOB_OUTPUT_URI"] == str(Path(body["job_dir"]) / "output")
    assert "UNIJOB_CHECKPOINT_URI" not in body["env"]


def test_image_job_needs_run_image_command(tmp_path):
    spec = JobSpec.model_validate({"name": "img", "image": "python:3.11", "command": ["python", "-c", "pass"]},
                                  context={"base_dir": tmp_path})
    with pytest.raises(SpecError) as ei:
        LocalAdapter().plan(spec, "s")
    assert ei.value.issues[0].loc == ("image",) and "container runtime" in ei.value.issues[0].message
    ok = spec.model_copy(update={"targets": {"local": {"run_image_command": True}}})
    plan = LocalAdapter().plan(ok, "s")
    assert plan.request("local:launch").body["argv"] == ["python", "-c", "pass"]
    assert any("python:3.11" in n and "host" in n for n in plan.notes)


def test_simulated_preemption_needs_spot(tmp_path):
    spec = make_spec(tmp_path, targets={"local": {"simulate_preemption": "5s"}})
    with pytest.raises(SpecError) as ei:
        LocalAdapter().plan(spec, "s")
    assert ei.value.issues[0].loc == ("targets", "local", "simulate_preemption")
    spot = make_spec(tmp_path, spot={"policy": "spot", "max_restarts": 2},
                     targets={"local": {"simulate_preemption": "1m", "preemption_grace": 3}})
    body = LocalAdapter().plan(spot, "s").request("local:launch").body
    assert (body["simulate_preemption"], body["grace"], body["max_restarts"]) == (60, 3, 2)
    assert body["simulate_preemptions"] == 1  # one reclaim by default


def test_accelerator_is_a_warning_not_an_error(tmp_path):
    plan = LocalAdapter().plan(make_spec(tmp_path, resources={"accelerator": "H100:2"}), "s")
    assert any("H100:2" in w and "CPU" in w for w in plan.warnings)
    assert plan.request("local:launch").body["processes_per_node"] == 2


def test_native_name_is_a_dns_label(tmp_path):
    plan = LocalAdapter().plan(make_spec(tmp_path, name="x" * 63), "s")
    assert len(plan.name) <= 63 and plan.name.startswith("x")
