"""plan(): the CustomJob body, checked field by field and re-parsed by the aiplatform_v1 types,
and the SpecErrors for input Vertex cannot take."""

from __future__ import annotations

import json

import pytest
from google.cloud import aiplatform_v1 as aip

from unijob.errors import SpecError
from unijob_adapters.vertex.plan import pack_source


def _job(plan, when="submit"):
    body = plan.request("customJobs", when=when).body
    # the body is exactly what the REST API takes: it re-parses strictly
    return body, aip.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)


def _env(pool):
    return {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}


@pytest.mark.parametrize("acc,machine,enum", [
    ("A100:8", "a2-highgpu-8g", "NVIDIA_TESLA_A100"),
    ("A100-80GB:8", "a2-ultragpu-8g", "NVIDIA_A100_80GB"),
    ("H100:8", "a3-highgpu-8g", "NVIDIA_H100_80GB"),
    ("L4", "g2-standard-4", "NVIDIA_L4"),
    ("T4", "n1-standard-4", "NVIDIA_TESLA_T4"),
    ("V100:2", "n1-standard-16", "NVIDIA_TESLA_V100"),
])
def test_machine_spec_from_the_catalog(adapter, make_spec, acc, machine, enum):
    body, job = _job(adapter.plan(make_spec(resources={"accelerator": acc}), "s"))
    ms = body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert ms["machineType"] == machine and ms["acceleratorType"] == enum
    assert job.job_spec.worker_pool_specs[0].machine_spec.accelerator_type == aip.AcceleratorType[enum]


def test_gang_is_chief_plus_workers(adapter, make_spec):
    plan = adapter.plan(make_spec(resources={"accelerator": "H100:8", "nodes": 4, "disk_gib": 500}), "s")
    body, job = _job(plan)
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "3"]  # int64 as strings, as REST sends them
    assert pools[0]["machineSpec"] == pools[1]["machineSpec"]
    assert pools[0]["diskSpec"] == {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 500}
    assert body["jobSpec"]["scheduling"]["restartJobOnWorkerRestart"] is True
    assert plan.resources.instance_count == 4 and plan.resources.instance_type == "a3-highgpu-8g"
    assert plan.resources.accelerators_per_node == 8


def test_single_node_has_one_pool_and_on_demand(adapter, make_spec):
    body, _ = _job(adapter.plan(make_spec(max_run="2h"), "s"))
    assert len(body["jobSpec"]["workerPoolSpecs"]) == 1
    sched = body["jobSpec"]["scheduling"]
    assert sched["strategy"] == "ON_DEMAND" and sched["timeout"] == "7200s" and "maxWaitDuration" not in sched
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-standard-4"}


def test_spot_with_fallback_plans_an_on_demand_twin(adapter, make_spec):
    spec = make_spec(spot={"policy": "spot_with_fallback", "max_wait": "5h", "max_restarts": 0}, max_run="4h",
                     checkpoint={"uri": "gs://bucket/ckpt"})
    plan = adapter.plan(spec, "s")
    spot, _ = _job(plan)
    fb, _ = _job(plan, when="fallback")
    assert spot["jobSpec"]["scheduling"] == {"timeout": "14400s", "strategy": "SPOT", "maxWaitDuration": "3600s",
                                             "disableRetries": True}
    assert fb["jobSpec"]["scheduling"]["strategy"] == "ON_DEMAND" and "maxWaitDuration" not in fb["jobSpec"]["scheduling"]
    assert fb["displayName"] == spot["displayName"] + "-od" and fb["labels"]["unijob_attempt"] == "fallback"
    assert _env(fb["jobSpec"]["workerPoolSpecs"][0])["UNIJOB_CHECKPOINT_URI"] == "gs://bucket/ckpt"
    assert any("ON_DEMAND" in n and "gs://bucket/ckpt" in n for n in plan.notes)


def test_env_contract_labels_and_options(adapter, make_spec, block):
    spec = make_spec(
        labels={"team": "ml"}, env={"FOO": "bar"}, hyperparameters={"lr": 0.1, "epochs": 3},
        inputs={"train": "gs://bucket/data/train", "extra": "https://example.org/x.csv"},
        secrets={"HF_TOKEN": "gcp-secretmanager://projects/demo-project/secrets/hf"},
        targets={"vertex": block(service_account="sa@demo-project.iam.gserviceaccount.com",
                                 network="projects/123/global/networks/vpc", reserved_ip_ranges=["r1"],
                                 encryption_key="projects/p/locations/us-central1/keyRings/k/cryptoKeys/c")})
    plan = adapter.plan(spec, "sub-x")
    body, _ = _job(plan)
    env = _env(body["jobSpec"]["workerPoolSpecs"][0])
    assert env["FOO"] == "bar" and env["UNIJOB_TARGET"] == "vertex" and env["UNIJOB_JOB_NAME"] == plan.name
    assert json.loads(env["UNIJOB_HYPERPARAMETERS"]) == {"lr": 0.1, "epochs": 3}
    assert json.loads(env["UNIJOB_CHANNELS"]) == {"train": "/gcs/bucket/data/train", "extra": "https://example.org/x.csv"}
    assert json.loads(env["UNIJOB_SECRET_REFS"]) == {"HF_TOKEN": "gcp-secretmanager://projects/demo-project/secrets/hf"}
    assert body["labels"]["team"] == "ml" and len(body["labels"]["unijob_submission"]) == 16
    js = body["jobSpec"]
    assert js["serviceAccount"] == "sa@demo-project.iam.gserviceaccount.com"
    assert js["network"] == "projects/123/global/networks/vpc" and js["reservedIpRanges"] == ["r1"]
    assert js["baseOutputDirectory"] == {"outputUriPrefix": "gs://bucket/out"}
    assert body["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/c")
    assert plan.name.startswith("train-") and plan.name == adapter.plan(spec, "sub-x").name


def test_script_job_uploads_source_and_starts_python_per_node(adapter, make_spec, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    (tmp_path / "src" / "requirements.txt").write_text("numpy\n")
    spec = make_spec(image=None, command=None, script="src/train.py", requirements="src/requirements.txt",
                     args=["--epochs", "2"], resources={"accelerator": "L4", "nodes": 2})
    plan = adapter.plan(spec, "s")
    up, wheel = plan.uploads
    assert up.destination.startswith("gs://bucket/unijob-staging/unijob/src/") and up.sha256 in up.destination
    assert wheel.kind == "runtime-wheel"
    body, _ = _job(plan)
    cs = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert cs["imageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.")
    assert cs["command"][:2] == ["bash", "-c"] and cs["args"] == ["--epochs", "2"]
    script = cs["command"][2]
    assert "/gcs/bucket/unijob-staging/unijob/src/" in script and "torchrun" not in script
    assert f"--no-deps --no-index --force-reinstall --no-warn-script-location ./{wheel.source}" in script
    assert "pip install --no-cache-dir --disable-pip-version-check -r requirements.txt" in script
    assert script.splitlines()[-1] == 'exec python3 train.py "$@"'


def test_several_processes_per_node_use_torchrun_when_the_image_has_it(adapter, make_spec, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    spec = make_spec(image=None, command=None, script="src/train.py", resources={"accelerator": "L4:4", "nodes": 2})
    body, _ = _job(adapter.plan(spec, "s"))
    script = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"][2]
    assert "--nproc-per-node=4" in script and "exec torchrun" in script
    assert "command -v torchrun" in script and "torchrun is not in this image" in script


def test_source_tarball_is_deterministic(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"junk")
    first = pack_source(tmp_path)
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"other junk")
    assert pack_source(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert pack_source(tmp_path) != first


def test_plan_touches_no_credentials(adapter, make_spec, monkeypatch):
    import google.auth

    monkeypatch.setattr(google.auth, "default", lambda *a, **k: pytest.fail("plan() asked for credentials"))
    assert adapter.plan(make_spec(), "s").requests


# ---- bad input ------------------------------------------------------------------------------------


def _err(adapter, spec) -> tuple[tuple, str]:
    with pytest.raises(SpecError) as ei:
        adapter.plan(spec, "s")
    issue = ei.value.issues[0]
    return issue.loc, issue.message + " " + str(issue.suggestion)


def test_no_project_is_a_spec_error(adapter, make_spec, fake):
    loc, msg = _err(adapter, make_spec(targets={"vertex": {"location": "us-central1"}}))
    assert loc == ("targets", "vertex", "project") and "GOOGLE_CLOUD_PROJECT" in msg
    assert fake.requests == []


def test_project_and_location_from_environment(adapter, make_spec, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    loc, msg = _err(adapter, make_spec(targets={}))
    assert loc == ("targets", "vertex", "location")
    monkeypatch.setenv("CLOUD_ML_REGION", "europe-west4")
    plan = adapter.plan(make_spec(targets={}), "s")
    assert plan.request("customJobs").api == "POST /v1/projects/env-project/locations/europe-west4/customJobs"


def test_non_gcs_output_is_rejected(adapter, make_spec):
    loc, msg = _err(adapter, make_spec(output="s3://bucket/out"))
    assert loc == ("output",) and "gs://" in msg


@pytest.mark.parametrize("acc", ["A10G:4", "L40S"])
def test_accelerator_vertex_lacks(adapter, make_spec, acc):
    loc, msg = _err(adapter, make_spec(resources={"accelerator": acc}))
    assert loc == ("resources", "accelerator")
    assert "accelerators offered" in msg and "H100" in msg and "L4" in msg


@pytest.mark.parametrize("acc,offered", [("H100:3", "1, 2, 4, 8"), ("T4:8", "1, 2, 4"), ("L4:3", "1, 2, 4, 8")])
def test_accelerator_count_not_offered(adapter, make_spec, acc, offered):
    loc, msg = _err(adapter, make_spec(resources={"accelerator": acc}))
    assert loc == ("resources", "accelerator") and offered in msg


def test_env_secret_refs_are_rejected(adapter, make_spec):
    loc, msg = _err(adapter, make_spec(secrets={"TOKEN": "env://TOKEN"}))
    assert loc == ("secrets", "TOKEN") and "gcp-secretmanager://" in msg


def test_local_inputs_and_checkpoints_are_rejected(adapter, make_spec):
    assert _err(adapter, make_spec(inputs={"train": "/data/train"}))[0] == ("inputs", "train")
    assert _err(adapter, make_spec(checkpoint={"uri": "s3://b/ck"}))[0] == ("checkpoint", "uri")


def test_bad_options(adapter, make_spec, block):
    loc, _ = _err(adapter, make_spec(targets={"vertex": block(staging_bucket="s3://nope")}))
    assert loc[:3] == ("targets", "vertex", "staging_bucket")
    loc, _ = _err(adapter, make_spec(targets={"vertex": block(encryption_key="my-key")}))
    assert loc[:3] == ("targets", "vertex", "encryption_key")


def test_sklearn_framework_runs_python_in_the_scikit_learn_container(adapter, make_spec, tmp_path):
    from unijob.errors import SpecError

    (tmp_path / "train.py").write_text("print('hi')\n")
    spec = make_spec(image=None, command=None, script="train.py", framework={"name": "sklearn", "version": "1.2"},
                     resources={"nodes": 2})
    body, _ = _job(adapter.plan(spec, "s"))
    cs = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert cs["imageUri"] == "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-2:latest"
    assert cs["command"][2].splitlines()[-1] == 'exec python3 train.py "$@"'
    for over, field in (({"resources": {"accelerator": "T4"}}, "resources.accelerator"),
                        ({"resources": {"processes_per_node": 2}}, "resources.processes_per_node"),
                        ({"framework": {"name": "sklearn", "version": "0.9"}}, "framework.version")):
        fields = {"image": None, "command": None, "script": "train.py",
                  "framework": {"name": "sklearn", "version": "1.2"}, **over}
        with pytest.raises(SpecError) as e:
            adapter.plan(make_spec(**fields), "s")
        assert field in str(e.value)
