"""plan(): clouds, spot spellings, gangs, containers, secrets, and the bad input it rejects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unijob.errors import SpecError
from unijob_adapters.databricks.adapter import DatabricksAdapter
from unijob_adapters.databricks.plan import check_submit_body

A = DatabricksAdapter()
UNIJOB = str(Path(sys.executable).with_name("unijob"))


def _cluster(plan):
    body = plan.requests[0].body
    check_submit_body(body)
    return body["tasks"][0]["new_cluster"], body["tasks"][0]


@pytest.mark.parametrize("cloud,acc,node,attr,policy,avail", [
    ("aws", "A10G", "g5.xlarge", "aws_attributes", "spot", "SPOT"),
    ("azure", "T4", "Standard_NC4as_T4_v3", "azure_attributes", "spot_with_fallback", "SPOT_WITH_FALLBACK_AZURE"),
    ("azure", "T4", "Standard_NC4as_T4_v3", "azure_attributes", "spot", "SPOT_AZURE"),
    ("gcp", "L4", "g2-standard-4", "gcp_attributes", "spot", "PREEMPTIBLE_GCP"),
    ("gcp", "A100", "a2-highgpu-1g", "gcp_attributes", "spot_with_fallback", "PREEMPTIBLE_WITH_FALLBACK_GCP"),
    ("aws", "A10G", "g5.xlarge", "aws_attributes", "on_demand", "ON_DEMAND"),
])
def test_spot_as_each_cloud_spells_it(spec_factory, cloud, acc, node, attr, policy, avail):
    spec = spec_factory(f"""
    name: j
    script: src/train.py
    resources: {{accelerator: {acc}, nodes: 3}}
    spot: {{policy: {policy}}}
    targets: {{databricks: {{cloud: {cloud}}}}}
    """)
    nc, _ = _cluster(A.plan(spec, "s"))
    assert nc["node_type_id"] == node and nc["num_workers"] == 3
    assert nc[attr] == {"availability": avail, "first_on_demand": 1}
    assert {"aws_attributes", "azure_attributes", "gcp_attributes"} & set(nc) == {attr}


def test_single_node_local_gang_and_cpu_runtime(spec_factory):
    gpu = spec_factory("""
    name: one
    script: src/train.py
    resources: {accelerator: "A10G:4"}
    spot: {policy: spot}
    """)
    nc, task = _cluster(A.plan(gpu, "s"))
    assert nc["num_workers"] == 0 and nc["spark_conf"]["spark.databricks.cluster.profile"] == "singleNode"
    assert nc["custom_tags"]["ResourceClass"] == "SingleNode" and nc["node_type_id"] == "g5.12xlarge"
    assert nc["aws_attributes"]["first_on_demand"] == 0  # the only node is the driver: spot as asked
    assert task["spark_python_task"]["parameters"][:4] == ["--mode", "local", "--num-processes", "4"]
    cpu = spec_factory("""
    name: cpu
    script: src/train.py
    """)
    nc, task = _cluster(A.plan(cpu, "s"))
    assert nc["spark_version"] == "15.4.x-cpu-ml-scala2.12" and nc["node_type_id"] == "c5.xlarge"
    assert task["spark_python_task"]["parameters"][:2] == ["--mode", "direct"]


def test_env_contract_and_secret_references(spec_factory):
    spec = spec_factory("""
    name: env
    script: src/train.py
    inputs: {train: "/Volumes/main/ml/data/train", val: "s3://bucket/val"}
    output: dbfs:/out
    env: {MODE: fast}
    hyperparameters: {lr: 0.1, warm: true}
    secrets: {HF_TOKEN: "databricks-secret://ml/hf", DB_PASS: "aws-secretsmanager://prod/db"}
    """)
    nc, task = _cluster(A.plan(spec, "s"))
    env = nc["spark_env_vars"]
    assert env["HF_TOKEN"] == "{{secrets/ml/hf}}" and env["MODE"] == "fast"
    assert json.loads(env["UNIJOB_SECRET_REFS"]) == {"DB_PASS": "aws-secretsmanager://prod/db"}
    assert json.loads(env["UNIJOB_CHANNELS"]) == {"train": "/Volumes/main/ml/data/train", "val": "s3://bucket/val"}
    assert json.loads(env["UNIJOB_HYPERPARAMETERS"]) == {"lr": 0.1, "warm": True}
    assert env["UNIJOB_OUTPUT_URI"] == "dbfs:/out" and env["UNIJOB_TARGET"] == "databricks"
    assert task["spark_python_task"]["parameters"][-4:] == ["--lr", "0.1", "--warm", "true"]


@pytest.mark.parametrize("ref", ["env://HOME", "k8s-secret://s/k"])
def test_unreachable_secret_schemes_are_rejected(spec_factory, ref):
    spec = spec_factory(f"""
    name: s
    script: src/train.py
    secrets: {{TOK: "{ref}"}}
    """)
    with pytest.raises(SpecError) as ei:
        A.plan(spec, "s")
    assert ei.value.issues[0].loc == ("secrets", "TOK") and "databricks-secret://" in str(ei.value)


def test_accelerator_the_cloud_lacks(spec_factory):
    spec = spec_factory("""
    name: s
    script: src/train.py
    resources: {accelerator: A10G}
    targets: {databricks: {cloud: gcp}}
    """)
    with pytest.raises(SpecError) as ei:
        A.plan(spec, "s")
    assert ei.value.issues[0].loc == ("resources", "accelerator") and "gcp" in str(ei.value)


def test_runtime_must_match_the_hardware(spec_factory):
    spec = spec_factory("""
    name: s
    script: src/train.py
    resources: {accelerator: T4}
    targets: {databricks: {spark_version: 15.4.x-cpu-ml-scala2.12}}
    """)
    with pytest.raises(SpecError) as ei:
        A.plan(spec, "s")
    assert ei.value.issues[0].loc == ("targets", "databricks", "spark_version")
    assert ei.value.issues[0].suggestion == "15.4.x-gpu-ml-scala2.12"


def test_container_job_on_container_services(spec_factory):
    spec = spec_factory("""
    name: c
    image: myregistry.io/team/train:1.2
    command: [python, -m, train]
    args: [--fast]
    targets: {databricks: {docker_username: bot, docker_password: "databricks-secret://ci/registry"}}
    """)
    nc, task = _cluster(A.plan(spec, "s"))
    assert nc["docker_image"] == {"url": "myregistry.io/team/train:1.2",
                                  "basic_auth": {"username": "bot", "password": "{{secrets/ci/registry}}"}}
    assert nc["spark_version"] == "15.4.x-scala2.12"
    assert task["spark_python_task"]["parameters"] == ["--exec", "--", "python", "-m", "train", "--fast"]


@pytest.mark.parametrize("opts,loc", [
    ("{spark_version: 15.4.x-gpu-ml-scala2.12}", ("targets", "databricks", "spark_version")),
    ("{node_type_id: m6gd.xlarge}", ("targets", "databricks", "node_type_id")),
    ("{container_services: false}", ("image",)),
])
def test_container_services_where_it_is_refused(spec_factory, opts, loc):
    spec = spec_factory(f"""
    name: c
    image: repo/img:1
    command: [run]
    targets: {{databricks: {opts}}}
    """)
    with pytest.raises(SpecError) as ei:
        A.plan(spec, "s")
    assert ei.value.issues[0].loc == loc


@pytest.mark.parametrize("model,version,loc", [
    ("main.ml.ranker", None, ("endpoint", "model")),
    ("models:/main.ml.ranker@champion", None, ("endpoint", "model")),
    ("s3://bucket/model.tar.gz", "1", ("endpoint", "model")),
])
def test_unity_catalog_model_needs_a_version(spec_factory, model, version, loc):
    v = f'\n      model_version: "{version}"' if version else ""
    spec = spec_factory(f"""
    name: e
    script: src/train.py
    endpoint:
      model: "{model}"{v}
    """)
    with pytest.raises(SpecError) as ei:
        A.plan_endpoint(spec)
    assert ei.value.issues[0].loc == loc


@pytest.mark.parametrize("maxr,size", [(1, "Small"), (4, "Medium"), (16, "Large")])
def test_workload_size_from_max_replicas(spec_factory, maxr, size):
    spec = spec_factory(f"""
    name: e
    script: src/train.py
    endpoint: {{model: "models:/main.ml.m/1", min_replicas: 1, max_replicas: {maxr}, accelerator: T4}}
    """)
    e = A.plan_endpoint(spec).requests[0].body["config"]["served_entities"][0]
    assert (e["workload_size"], e["workload_type"], e["scale_to_zero_enabled"]) == (size, "GPU_SMALL", False)


def test_cli_plan_prints_the_body_and_bad_input_exits_2(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    good = tmp_path / "good.yaml"
    good.write_text("name: cli\nscript: train.py\nresources: {accelerator: A10G}\n")
    out = subprocess.run([UNIJOB, "plan", str(good), "--target", "databricks", "-o", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)["requests"][0]["body"]
    assert body["tasks"][0]["new_cluster"]["node_type_id"] == "g5.xlarge"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: cli\nscript: train.py\nresources: {accelerator: A10G}\ntargets: {databricks: {cloud: gcp}}\n")
    out = subprocess.run([UNIJOB, "plan", str(bad), "--target", "databricks"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "resources.accelerator" in out.stderr


def test_the_runtime_travels_as_a_wheel_library_not_from_an_index(spec_factory):
    from unijob.bundle import runtime_wheel

    spec = spec_factory("""
    name: j
    script: src/train.py
    targets: {databricks: {cloud: aws}}
    """)
    plan = A.plan(spec, "s")
    _, task = _cluster(plan)
    wheel = runtime_wheel(["databricks"])
    path = f"/Workspace/Shared/unijob/_runtime/{wheel.filename}"
    assert task["libraries"] == [{"whl": path}]  # no pypi 'unijob'
    [up] = [u for u in plan.uploads if u.kind == "runtime-wheel"]
    assert (up.source, up.destination, up.sha256) == (wheel.filename, path, wheel.sha256)
    # a team that publishes its own build opts in to an index instead
    spec = spec_factory("""
    name: j
    script: src/train.py
    targets: {databricks: {cloud: aws, runtime_package: "acme-unijob==1.2"}}
    """)
    _, task = _cluster(A.plan(spec, "s"))
    assert task["libraries"] == [{"pypi": {"package": "acme-unijob==1.2"}}]


def test_a_gang_on_a_runtime_without_pytorch_is_warned(spec_factory):
    spec = spec_factory("""
    name: j
    script: src/train.py
    resources: {nodes: 1, processes_per_node: 2}
    targets: {databricks: {cloud: aws, spark_version: 15.4.x-scala2.12}}
    """)
    [w] = [w for w in A.plan(spec, "s").warnings if "TorchDistributor" in w]
    assert "15.4.x-scala2.12" in w and "PyTorch" in w
    spec = spec_factory("""
    name: j
    script: src/train.py
    resources: {nodes: 1, processes_per_node: 2}
    targets: {databricks: {cloud: aws}}
    """)
    assert not [w for w in A.plan(spec, "s").warnings if "TorchDistributor" in w]
