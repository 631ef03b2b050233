"""validate.rest_json: bodies from the cached aiplatform_v1 descriptors equal the proto-plus
types' own, reject what those types reject, and a warm plan imports no aiplatform_v1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unijob.loading import load_spec
from unijob_adapters.vertex import validate
from unijob_adapters.vertex.adapter import VertexAdapter

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

JOB = {"display_name": "x", "labels": {"team": "ml", "unijob_job": "x", "unijob_submission": "k", "z": "last"},
       "job_spec": {"worker_pool_specs": [
           {"replica_count": 2, "machine_spec": {"machine_type": "g2-standard-4", "accelerator_type": "NVIDIA_L4",
                                                 "accelerator_count": 1},
            "container_spec": {"image_uri": "i", "command": ["bash"], "args": [], "env": [{"name": "A", "value": "b"}]},
            "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100}}],
           "scheduling": {"timeout": {"seconds": 7200}, "strategy": "SPOT", "restart_job_on_worker_restart": False,
                          "disable_retries": True, "max_wait_duration": {"seconds": 3600}},
           "base_output_directory": {"output_uri_prefix": "gs://b/out"}}}
DEPLOY = {"endpoint": "projects/p/locations/l/endpoints/e",
          "deployed_model": {"id": "2", "model": "m", "display_name": "green",
                             "dedicated_resources": {"min_replica_count": 1, "max_replica_count": 3, "spot": False,
                                                     "machine_spec": {"machine_type": "n1-standard-4"},
                                                     "autoscaling_metric_specs": [{"metric_name": "cpu", "target": 60}]}},
          "traffic_split": {"1": 90, "0": 10}}


@pytest.mark.parametrize("message,data", [("CustomJob", JOB), ("DeployModelRequest", DEPLOY),
                                          ("Endpoint", {"display_name": "e", "labels": {"b": "1", "a": "2"}}),
                                          ("UploadModelRequest", {"parent": "p", "model_id": "m", "service_account": "",
                                                                  "model": {"display_name": "m", "artifact_uri": "gs://b/m",
                                                                            "container_spec": {"image_uri": "i"}}})])
def test_cached_descriptors_give_the_proto_plus_body(message, data, monkeypatch):
    monkeypatch.setattr(validate, "_POOL", None)  # every test has its own UNIJOB_HOME: write its cache there
    fast = validate.rest_json(message, data)
    assert validate._load_pool() is not None and validate.cache_path().exists()
    assert json.dumps(fast) == json.dumps(validate.proto_plus_json(message, data))


def test_map_fields_keep_the_plan_order():
    out = validate.rest_json("CustomJob", JOB)
    assert list(out["labels"]) == ["team", "unijob_job", "unijob_submission", "z"]
    assert out["jobSpec"]["scheduling"]["timeout"] == "7200s" and out["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "2"
    assert list(validate.rest_json("DeployModelRequest", DEPLOY)["trafficSplit"]) == ["1", "0"]


@pytest.mark.parametrize("bad,error", [
    ({"display_nam": "x"}, ValueError),                               # unknown field
    ({"job_spec": {"scheduling": {"strategy": "SPOTTY"}}}, ValueError),  # unknown enum name
    ({"display_name": 3}, TypeError),                                 # wrong scalar type
    ({"job_spec": {"worker_pool_specs": [{"replica_count": "two"}]}}, TypeError),
])
def test_what_the_types_reject_is_rejected(bad, error):
    with pytest.raises((ValueError, TypeError, KeyError)):
        validate.proto_plus_json("CustomJob", bad)
    with pytest.raises(error):
        validate.rest_json("CustomJob", bad)


@pytest.mark.parametrize("example,endpoint", [("portable/job.yaml", False), ("vertex/job.yaml", False),
                                              ("vertex/endpoint.yaml", True)])
def test_plans_are_the_same_with_and_without_the_cache(example, endpoint, monkeypatch):
    spec = load_spec(str(EXAMPLES / example)).spec
    adapter = VertexAdapter()

    def plan() -> str:
        p = adapter.plan_endpoint(spec) if endpoint else adapter.plan(spec, "sub-1")
        return p.model_dump_json(indent=2)

    fast = plan()
    monkeypatch.setattr(validate, "_load_pool", lambda: None)  # the proto-plus types themselves
    assert plan() == fast


def test_an_unwritable_cache_falls_back_to_the_types(tmp_path, monkeypatch):
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setattr(validate, "cache_path", lambda: tmp_path / "not-a-dir" / "descriptors.binpb")
    monkeypatch.setattr(validate, "_POOL", None)
    assert validate._load_pool() is None
    assert validate.rest_json("CustomJob", JOB) == validate.proto_plus_json("CustomJob", JOB)


def test_a_warm_plan_imports_no_aiplatform(tmp_path):
    code = ("import sys\nfrom unijob.loading import load_spec\nfrom unijob_adapters.vertex.adapter import VertexAdapter\n"
            f"VertexAdapter().plan(load_spec({str(EXAMPLES / 'portable/job.yaml')!r}).spec, 's')\n"
            "print(sorted(m for m in sys.modules if m.startswith('google.cloud.aiplatform')))")
    env = {**__import__("os").environ, "UNIJOB_HOME": str(tmp_path)}
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "aiplatform_v1" in cold.stdout  # the first plan takes the descriptors from the types
    assert list((tmp_path / "cache" / "vertex").glob("descriptors-*.binpb"))
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert warm.stdout.strip() == "[]", warm.stdout
