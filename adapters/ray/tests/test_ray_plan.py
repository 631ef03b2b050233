"""plan() for Ray: the submit_job call as data, pure, and the refusals that need no cluster."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unijob.errors import SpecError
from unijob.loading import load_spec
from unijob.testing.conformance import no_network  # noqa: F401  (fixture)
from unijob_adapters.ray.adapter import RayAdapter
from unijob_adapters.ray.testing import spec_with

REPO = Path(__file__).resolve().parents[3]
PORTABLE = REPO / "examples" / "portable" / "job.yaml"
QUICKSTART = REPO / "examples" / "quickstart" / "job.yaml"


def gang_args(plan) -> dict[str, str]:
    toks = shlex.split(plan.requests[0].body["entrypoint"])[3:]
    out, i = {}, 0
    while toks[i] != "--":
        out[toks[i][2:]] = toks[i + 1]
        i += 2
    out["command"] = " ".join(toks[i + 1:])
    return out


def g_wheel(plan) -> str:
    return gang_args(plan)["runtime-wheel"]


def test_portable_plan_is_the_submit_job_call(no_network):
    spec = load_spec(PORTABLE).spec
    plan = RayAdapter().plan(spec, "portable-1")
    body = plan.requests[0].body
    assert plan.requests[0].api == "ray:JobSubmissionClient.submit_job"
    assert set(body) == {"entrypoint", "submission_id", "runtime_env", "entrypoint_num_cpus", "metadata"}
    assert body["submission_id"] == plan.name and plan.name.startswith("portable-")
    assert body["metadata"]["unijob_submission"] == "portable-1"
    env = body["runtime_env"]
    assert env["working_dir"] == str(PORTABLE.parent)
    assert len(env["py_modules"]) == 1 and Path(env["py_modules"][0]).name == "unijob_ray_gang"
    assert g_wheel(plan).endswith(".whl") and plan.extra["wheel"] == g_wheel(plan)
    assert json.loads(env["env_vars"]["UNIJOB_HYPERPARAMETERS"]) == {"epochs": 3, "lr": 0.01}
    g = gang_args(plan)
    assert g["strategy"] == "STRICT_SPREAD" and g["nodes"] == "2" and g["procs-per-node"] == "1"
    assert json.loads(g["bundle"]) == {"CPU": 1.0, "GPU": 1.0, "accelerator_type:L4": 0.001}
    assert g["max-wait"] == "10800" and g["max-restarts"] == "2" and g["max-run"] == "7200"
    assert g["command"] == "train.py"
    assert plan.resources.service == "ray" and plan.resources.accelerator == "L4"
    assert plan.resources.instance_count == 2


def test_single_node_packs_and_requirements_become_pip():
    plan = RayAdapter().plan(load_spec(QUICKSTART).spec, "q-1")
    g = gang_args(plan)
    assert g["strategy"] == "PACK" and g["nodes"] == "1" and "max-wait" not in g
    assert plan.requests[0].body["runtime_env"]["pip"] == ["scikit-learn>=1.3"]
    env = plan.requests[0].body["runtime_env"]["env_vars"]
    assert env["UNIJOB_CHECKPOINT_DIR"] == str(QUICKSTART.parent / "checkpoints")


def test_refusals_name_the_field(tmp_path):
    spec = load_spec(PORTABLE).spec
    image = spec.model_copy(update={"script": None, "image": "python:3.11", "command": ["python", "-c", "1"]})
    with pytest.raises(SpecError) as ei:
        RayAdapter().plan(image, "x")
    assert ei.value.issues[0].loc == ("image",)
    bad_env = spec.model_copy(update={"env": {"RANK": "3"}})
    with pytest.raises(SpecError) as ei:
        RayAdapter().plan(bad_env, "x")
    assert ei.value.issues[0].loc == ("env", "RANK")
    with pytest.raises(SpecError) as ei:
        RayAdapter().plan(spec_with(PORTABLE, {"adress": "http://x:8265"}), "x")
    assert ei.value.issues[0].loc[:2] == ("targets", "ray") and "address" in str(ei.value)


def test_plan_and_help_never_import_ray(tmp_path):
    code = ("import sys; from unijob.loading import load_spec; from unijob_adapters.ray.adapter import RayAdapter; "
            f"RayAdapter().plan(load_spec({str(PORTABLE)!r}).spec, 's'); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_endpoints_are_refused_with_the_reason():
    spec = load_spec(REPO / "examples" / "quickstart" / "endpoint.yaml").spec
    with pytest.raises(SpecError) as ei:
        RayAdapter().plan_endpoint(spec)
    assert ei.value.issues[0].loc == ("endpoint",) and "Ray Serve" in str(ei.value)
