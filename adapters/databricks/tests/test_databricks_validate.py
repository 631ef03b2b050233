"""validate: the stand-ins made from databricks-sdk's cached schema give the SDK's own plans,
byte for byte, reject what the SDK's round-trip rejects, and a warm plan imports no databricks.sdk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unijob_adapters.databricks import validate
from unijob_adapters.databricks.adapter import DatabricksAdapter
from unijob_adapters.databricks.endpoints import check_create_body
from unijob_adapters.databricks.plan import check_submit_body

A = DatabricksAdapter()
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

JOBS = {
    "aws spot gang, disk, logs on dbfs, pools": """
        name: j
        script: src/train.py
        requirements: src/requirements.txt
        resources: {accelerator: A10G, nodes: 3, disk_gib: 200}
        spot: {policy: spot_with_fallback, max_restarts: 2}
        checkpoint: {uri: dbfs:/ckpt}
        labels: {team: ml, cost-center: "42"}
        env: {A: b}
        secrets: {TOKEN: databricks-secret://scope/key}
        targets: {databricks: {cloud: aws, cluster_log_dir: dbfs:/logs, instance_pool_id: p1,
                               policy_id: pol, driver_node_type_id: g5.2xlarge}}
    """,
    "azure single node": """
        name: j
        script: src/train.py
        resources: {accelerator: T4}
        spot: {policy: spot}
        targets: {databricks: {cloud: azure, cluster_log_dir: /Volumes/main/ml/logs/x}}
    """,
    "gcp autoscale on demand": """
        name: j
        script: src/train.py
        resources: {cpus: 4, nodes: 2, max_nodes: 5, disk_gib: 100}
        hyperparameters: {lr: 0.1, deep: true}
        targets: {databricks: {cloud: gcp, runtime_package: null}}
    """,
    "container with registry auth": """
        name: j
        image: registry.example.com/train:1
        command: [python, train.py]
        args: [--x, "1"]
        targets: {databricks: {docker_username: u, docker_password: databricks-secret://s/k}}
    """,
}
FILES = {"src/train.py": "print('training')\n", "src/requirements.txt": "numpy==2.1\nscikit-learn>=1.3 # comment\n"}
ENDPOINT = """
    name: ep
    labels: {team: ml}
    endpoint:
      model: main.ml.ranker
      model_version: "3"
      accelerator: A10G
      min_replicas: 0
      max_replicas: 4
      variants:
        - {name: current, weight: 80}
        - {name: canary, model: "models:/main.ml.ranker/4", weight: 20}
"""


def _real(monkeypatch):
    monkeypatch.setattr(validate, "service", lambda module: None)
    monkeypatch.setattr(validate, "schema", lambda: None)


@pytest.mark.parametrize("text", list(JOBS.values()), ids=list(JOBS))
def test_job_plans_equal_the_sdks_byte_for_byte(spec_factory, monkeypatch, text):
    spec = spec_factory(text, FILES)
    monkeypatch.setattr(validate, "_SCHEMA", None)  # every test has its own UNIJOB_HOME: write its cache there
    fast = A.plan(spec, "sub-1").model_dump_json(indent=2)
    assert validate.cache_path().exists()
    _real(monkeypatch)
    assert A.plan(spec, "sub-1").model_dump_json(indent=2) == fast


def test_endpoint_plan_equals_the_sdks(spec_factory, monkeypatch):
    spec = spec_factory(ENDPOINT)
    fast = A.plan_endpoint(spec).model_dump_json(indent=2)
    _real(monkeypatch)
    assert A.plan_endpoint(spec).model_dump_json(indent=2) == fast


def test_the_stand_ins_reject_what_the_sdk_rejects(spec_factory):
    body = A.plan(spec_factory(JOBS["azure single node"], FILES), "s").requests[0].body
    for real in (False, True):
        check_submit_body(body, real=real)
        task = body["tasks"][0]
        for bad in ({**body, "cluster": {}},                                              # unknown top-level key
                    {**body, "tasks": [{**task, "new_clustr": task["new_cluster"]}]},     # unknown task field
                    {**body, "tasks": [{**task, "new_cluster": {**task["new_cluster"],
                                                                "azure_attributes": {"availability": "CHEAP"}}}]}):
            with pytest.raises(ValueError):
                check_submit_body(bad, real=real)


def test_stand_in_types_check_fields_and_enums():
    compute = validate.service("compute")
    with pytest.raises(TypeError, match="no field"):
        compute.AwsAttributes(availabilty="SPOT")
    with pytest.raises(ValueError):
        compute.AwsAvailability("SOMETIMES")
    a = compute.AwsAttributes(availability=compute.AwsAvailability("SPOT"), first_on_demand=0)
    with pytest.raises(TypeError):
        a.ebs_volume_typ = compute.EbsVolumeType.GENERAL_PURPOSE_SSD
    assert a.as_dict() == {"availability": "SPOT", "first_on_demand": 0}
    check_create_body({"name": "x", "config": {"name": "x"}})
    with pytest.raises(ValueError):
        check_create_body({"name": "x", "config": {"name": "x"}, "nope": 1})


def test_a_warm_plan_imports_no_databricks_sdk(tmp_path):
    code = ("import sys\nfrom unijob.loading import load_spec\n"
            "from unijob_adapters.databricks.adapter import DatabricksAdapter\n"
            f"DatabricksAdapter().plan(load_spec({str(EXAMPLES / 'portable/job.yaml')!r}).spec, 's')\n"
            "print(sorted(m for m in sys.modules if m.startswith('databricks.sdk')))")
    env = {**os.environ, "UNIJOB_HOME": str(tmp_path)}
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "databricks.sdk.service.jobs" in cold.stdout  # the first plan reads the schema from the SDK
    assert list((tmp_path / "cache" / "databricks").glob("schema-*.json"))
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert warm.stdout.strip() == "[]", warm.stdout
