"""Batch prediction on Kubernetes (issue 18): an Indexed Job sharding the input files, planned,
validated against the official schemas, and run the way the Job controller and the kubelet run it
(unijob.testing.contracts.kubernetes) in a Python without unijob or fsspec: the runner comes from
the runtime wheel in the ConfigMap. Its predictions equal the local batch's, line for line."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from unijob.contract import JobState
from unijob.errors import SpecError
from unijob.loading import load_spec
from unijob.testing.contracts.kubernetes import KubernetesContract
from unijob_adapters.kubernetes.adapter import KubernetesAdapter

A = KubernetesAdapter()
EXAMPLES = Path(__file__).parents[3] / "examples"
DOUBLER = "class Doubler:\n    def predict(self, instances):\n        return [x * 2 for x in instances]\n"


def _spec(tmp_path: Path, batch: dict, k8s: dict | None = None, **top):
    d = tmp_path / "proj"
    d.mkdir(exist_ok=True)
    (d / "handler.py").write_text(DOUBLER)
    b = {"handler": "handler.py:Doubler", "input": "pvc://data/in", "output": "pvc://data/out",
         "model": "pvc://models/m", "replicas": 3, "instances_per_request": 8, "max_error_fraction": 0.1}
    b.update(batch)
    doc = {"name": "doubler", "batch": {k: v for k, v in b.items() if v is not None},
           "targets": {"kubernetes": {"namespace": "ml", "image": "python:3.11-slim", **(k8s or {})}}, **top}
    (d / "batch.yaml").write_text(yaml.safe_dump(doc))
    return load_spec(d / "batch.yaml").spec


def _config(job: dict) -> dict:
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    raw = cmd[cmd.index("unijob.batch.shards") + 1]
    assert "$(" not in raw.replace("$$", ""), "a $(VAR) the kubelet would expand"
    return json.loads(raw.replace("$$", "$"))


def test_plan_is_an_indexed_job_of_shards_that_validates(tmp_path, validate):
    spec = _spec(tmp_path, {"parameters": {"note": "$(HOME) stays literal"}, "accelerator": "L4"},
                 env={"LOG_LEVEL": "debug"})
    plan = A.plan_batch(spec, "sub-1")
    assert plan.kind == "batch" and [r.api for r in plan.requests] == ["v1 ConfigMap", "batch/v1 Job"]
    for r in plan.requests:
        validate(r.body)
    job = plan.request("Job").body
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 3, 3)
    rules = js["podFailurePolicy"]["rules"]
    assert rules[1] == {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                             "values": [2, 3]}}
    c = js["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert c["workingDir"] == "/opt/unijob/src" and c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in c["volumeMounts"]}
    assert mounts["/opt/unijob/data/data"] is False and mounts["/opt/unijob/data/models"] is True
    cfg = _config(job)
    assert cfg["shards"] == 3 and cfg["index_env"] == "JOB_COMPLETION_INDEX" and cfg["run_id"] == plan.name
    assert (cfg["input"], cfg["output"], cfg["model"]) == ("/opt/unijob/data/data/in", "/opt/unijob/data/data/out",
                                                           "/opt/unijob/data/models/m")
    assert cfg["parameters"] == {"note": "$(HOME) stays literal"} and cfg["handler"] == "handler.py:Doubler"
    cm = plan.request("ConfigMap").body
    assert "class Doubler" in "".join(cm["data"].values())
    wheel = zipfile.ZipFile(io.BytesIO(base64.b64decode(cm["binaryData"]["unijob-runtime.whl"])))
    assert {"unijob/batch/shards.py", "unijob/batch/runner.py", "unijob/serve/handler.py"} <= set(wheel.namelist())
    assert any("round-robin" in n for n in plan.notes) and any("error budget" in n for n in plan.notes)


def test_image_batch_takes_the_images_handler(tmp_path, validate):
    spec = _spec(tmp_path, {"handler": None, "image": "ghcr.io/acme/digits-serve:1", "replicas": 2})
    plan = A.plan_batch(spec, "sub-1")
    for r in plan.requests:
        validate(r.body)
    c = plan.request("Job").body["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/acme/digits-serve:1" and "workingDir" not in c
    assert _config(plan.request("Job").body)["handler"] is None
    assert set(plan.request("ConfigMap").body["binaryData"]) == {"unijob-runtime.whl"}
    assert "data" not in plan.request("ConfigMap").body


@pytest.mark.parametrize("batch, k8s, loc, words", [
    ({}, {"image": None}, ("batch", "handler"), "serving_image"),
    ({"input": "file:///data/in"}, {}, ("batch", "input"), "pods cannot read"),
    ({"output": "./predictions"}, {}, ("batch", "output"), "pods cannot read"),
    ({"model": "models:/digits@champion"}, {}, ("batch", "model"), "resolved by `unijob batch`"),
    ({"input": "pvc://Bad_Claim/x"}, {}, ("batch", "input"), "pvc://CLAIM/PATH"),
    ({"accelerator": "P100"}, {}, ("batch", "accelerator"), "no node label value"),
])
def test_bad_batches_are_spec_errors_naming_the_field(tmp_path, batch, k8s, loc, words):
    with pytest.raises(SpecError) as e:
        A.plan_batch(_spec(tmp_path, batch, k8s), "sub-1")
    assert e.value.issues[0].loc == loc and words in e.value.issues[0].message


def _kubeconfig(tmp_path: Path, fake, monkeypatch) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u", "namespace": "ml"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(path))


def test_cli_refuses_a_batch_the_cluster_cannot_see_and_submits_nothing(tmp_path, fake, monkeypatch, capsys):
    from unijob.cli import main

    _kubeconfig(tmp_path, fake, monkeypatch)
    _spec(tmp_path, {"input": "file:///home/me/digits.jsonl"})
    assert main(["batch", str(tmp_path / "proj" / "batch.yaml"), "-t", "kubernetes"]) == 2
    err = capsys.readouterr().err
    assert "batch.input" in err and "batch.yaml:" in err and "pvc://" in err
    _spec(tmp_path, {"input": "pvc://data/in"}, {"image": None})
    assert main(["batch", str(tmp_path / "proj" / "batch.yaml"), "-t", "kubernetes"]) == 2
    assert "batch.handler" in capsys.readouterr().err
    assert fake.created == {}


def test_cli_submits_status_logs_and_cancels_a_batch(tmp_path, fake, monkeypatch, capsys):
    from unijob.cli import main

    _kubeconfig(tmp_path, fake, monkeypatch)
    _spec(tmp_path, {"replicas": 2})
    assert main(["batch", str(tmp_path / "proj" / "batch.yaml"), "-t", "kubernetes"]) == 0
    job_id = re.search(r"submitted batch (\S+)", capsys.readouterr().out).group(1)
    assert fake.created == {"ConfigMap": 1, "Job": 1}
    job = fake.find("Job", next(iter(o["metadata"]["name"] for o in fake.objects.values() if o["kind"] == "Job")))
    assert job["spec"]["completions"] == 2
    assert main(["status", job_id]) == 0
    assert "RUNNING" in capsys.readouterr().out
    assert main(["logs", job_id]) == 0
    assert "[shard 1] hello from index 1" in capsys.readouterr().out
    assert main(["cancel", job_id]) == 0
    fake.reap()
    assert fake.count("Job", "ConfigMap") == 0


# ---- the digits quickstart, run under the Kubernetes start contract ----------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A trained quickstart model (3 epochs) and 1,000 digit images in 3 JSON Lines files with keys,
    one of them carrying a malformed line; plus the local runner's outputs over the same input."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    from unijob.batch.runner import run

    base = tmp_path_factory.mktemp("digits")
    for name in ("train.py", "serve.py"):
        shutil.copy(EXAMPLES / "quickstart" / name, base / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
    env.update(UNIJOB_HYPERPARAMETERS=json.dumps({"epochs": 3}), UNIJOB_OUTPUT_DIR=str(base / "model"))
    out = subprocess.run([sys.executable, "train.py"], cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    images = load_digits().data[:1000].astype(int).tolist()
    data = base / "digits"
    data.mkdir()
    for part, (lo, hi) in enumerate([(0, 400), (400, 700), (700, 1000)]):
        with open(data / f"part-{part}.jsonl", "w") as f:
            for i in range(lo, hi):
                f.write(json.dumps({"key": f"img-{i}", "instance": images[i]}) + "\n")
                if i == 500:
                    f.write('{"key": "broken", "instance": [1, 2\n')  # line 102 of part-1.jsonl
    run({"handler": "serve.py:Digits", "base_dir": str(base), "model": str(base / "model"), "input": str(data),
         "output": str(base / "local"), "replicas": 1, "instances_per_request": 50, "max_error_fraction": 0.01,
         "parameters": {}})
    return base


def _k8s_run(adapter, fake, image_python, digits: Path, tmp_path: Path, budget: float):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(digits / "serve.py", proj / "serve.py")
    (proj / "batch.yaml").write_text(yaml.safe_dump({"name": "digits-batch", "batch": {
        "handler": "serve.py:Digits", "model": "pvc://models/digits", "input": "pvc://data/digits",
        "output": "pvc://data/predictions", "replicas": 2, "instances_per_request": 50,
        "max_error_fraction": budget}, "targets": {"kubernetes": {"namespace": "ml", "image": "python:3.11-slim"}}}))
    plan = adapter.plan_batch(load_spec(proj / "batch.yaml").spec, f"sub-{budget}")
    root = tmp_path / "cluster"
    shutil.copytree(digits / "model", root / "claims" / "models" / "digits")  # the claims' contents
    shutil.copytree(digits / "digits", root / "claims" / "data" / "digits")
    fake.spawn_pods = False
    handle = adapter.submit(plan)  # the fake API server validates every object with the official schemas
    with KubernetesContract.from_plan(plan, image_python, root, sink=fake,
                                      api_address=("127.0.0.1", int(fake.url.rsplit(":", 1)[1]))) as run:
        result = run.run(timeout=300)
    return handle, result, root / "claims" / "data" / "predictions"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_digits_batch_on_two_pods_equals_the_local_batch(adapter, fake, image_python, digits, tmp_path):
    handle, result, out = _k8s_run(adapter, fake, image_python, digits, tmp_path, budget=0.01)
    assert (result.condition, len(result.pods)) == ("Complete", 2), result.logs()
    # round-robin over the sorted files: pod 0 has part-0 and part-2, pod 1 part-1
    assert "shard 0/2: 2 file(s), 700 predictions, 0 errors in 700 lines" in result.logs(0), result.logs(0)
    assert "shard 1/2: 1 file(s), 300 predictions, 1 errors in 301 lines" in result.logs(1), result.logs(1)
    local = digits / "local"
    for part in range(3):
        rows = _rows(out / f"part-{part}.jsonl.out")
        assert rows == _rows(local / f"part-{part}.jsonl.out")  # same predictions, keys, order, error rows
    rows = [r for p in range(3) for r in _rows(out / f"part-{p}.jsonl.out")]
    assert len(rows) == 1001 and [r["key"] for r in rows if "key" in r] == [f"img-{i}" for i in range(1000)]
    assert sum("prediction" in r for r in rows) == 1000
    assert _rows(out / "errors.jsonl") == _rows(local / "errors.jsonl")
    (err,) = _rows(out / "errors.jsonl")
    assert (err["file"], err["line"]) == ("part-1.jsonl", 102) and "not JSON" in err["error"]
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert (summary["lines"], summary["predictions"], summary["errors"], summary["shards"]) == (1001, 1000, 1, 2)
    assert summary["within_budget"] is True
    st = adapter.status(handle)
    assert st.state == JobState.SUCCEEDED, st
    assert any(re.match(r"\[shard [01]\] unijob batch: 1000 predictions, 1 errors in 1001 lines", line)
               for line in adapter.logs(handle))


def test_digits_batch_over_the_budget_fails_the_whole_job(adapter, fake, image_python, digits, tmp_path):
    handle, result, out = _k8s_run(adapter, fake, image_python, digits, tmp_path, budget=0.0)
    # one bad line in 1,001: pod 1 alone is over, pod 0 alone is within; the job as a whole is over
    assert (result.condition, result.reason) == ("Failed", "PodFailurePolicy"), result.logs()
    assert len(result.pods) == 2, "a budget failure is not retried"
    assert sum(1 for p in range(3) for _ in _rows(out / f"part-{p}.jsonl.out")) == 1001  # every line still answered
    st = adapter.status(handle)
    assert st.state == JobState.FAILED
    assert "error budget" in st.message and "errors.jsonl" in st.message and "1 of 1001 lines failed" in st.message


# ---- the same batch with model, input and output on s3:// (moto's server) ---------------------------

#: Credential values only the Kubernetes Secret holds (moto takes any); they must never reach the plan.
S3_KEY_ID, S3_SECRET = "AKIAUNIJOBBATCHTEST1", "unijob-batch-test-secret-0f3a9c"


def _s3_client(url: str):
    import boto3

    from unijob.testing.objstore import REGION

    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=S3_KEY_ID,
                        aws_secret_access_key=S3_SECRET)


def _s3_rows(client, key: str) -> list[dict]:
    body = client.get_object(Bucket="acme-predictions", Key=key)["Body"].read().decode()
    return [json.loads(x) for x in body.splitlines()]


def _k8s_s3_run(adapter, fake, python, digits: Path, tmp_path: Path, s3: str, budget: float):
    """The digits batch with model and input in bucket acme-ml and output in acme-predictions (versioned,
    so every object ever written can be listed); the endpoint comes from the spec's env, the credentials
    from a Kubernetes Secret (secretKeyRef), as on a cluster reaching S3 or an S3-compatible store."""
    from unijob.testing.objstore import REGION

    c = _s3_client(s3)
    c.create_bucket(Bucket="acme-ml")
    c.create_bucket(Bucket="acme-predictions")
    c.put_bucket_versioning(Bucket="acme-predictions", VersioningConfiguration={"Status": "Enabled"})
    for sub, prefix in (("model", "models/digits"), ("digits", "data/digits")):
        for f in sorted((digits / sub).rglob("*")):
            if f.is_file():
                c.put_object(Bucket="acme-ml", Key=f"{prefix}/{f.relative_to(digits / sub)}", Body=f.read_bytes())
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(digits / "serve.py", proj / "serve.py")
    (proj / "batch.yaml").write_text(yaml.safe_dump({
        "name": "digits-batch",
        "batch": {"handler": "serve.py:Digits", "model": "s3://acme-ml/models/digits",
                  "input": "s3://acme-ml/data/digits", "output": "s3://acme-predictions/predictions", "replicas": 2,
                  "instances_per_request": 50, "max_error_fraction": budget},
        "env": {"AWS_ENDPOINT_URL": s3, "AWS_DEFAULT_REGION": REGION},
        "secrets": {"AWS_ACCESS_KEY_ID": "k8s-secret://s3-credentials/access-key-id",
                    "AWS_SECRET_ACCESS_KEY": "k8s-secret://s3-credentials/secret-access-key"},
        "targets": {"kubernetes": {"namespace": "ml", "image": "python:3.11-slim"}}}))
    plan = adapter.plan_batch(load_spec(proj / "batch.yaml").spec, f"sub-s3-{budget}")
    text = json.dumps([r.body for r in plan.requests]) + "\n".join(plan.notes)
    assert S3_KEY_ID not in text and S3_SECRET not in text
    env = {e["name"]: e for e in plan.request("Job").body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "s3-credentials", "key": "secret-access-key"}}}
    assert env["AWS_ENDPOINT_URL"]["value"] == s3
    assert any("s3fs" in n for n in plan.notes)
    fake.spawn_pods = False
    handle = adapter.submit(plan)
    secrets = {"s3-credentials/access-key-id": S3_KEY_ID, "s3-credentials/secret-access-key": S3_SECRET}
    with KubernetesContract.from_plan(plan, python, tmp_path / "cluster", sink=fake, secrets=secrets,
                                      api_address=("127.0.0.1", int(fake.url.rsplit(":", 1)[1]))) as run:
        result = run.run(timeout=300)
    return handle, result, c


def test_digits_batch_on_s3_equals_the_local_batch(adapter, fake, s3_image_python, digits, tmp_path, s3):
    handle, result, c = _k8s_s3_run(adapter, fake, s3_image_python, digits, tmp_path, s3, budget=0.01)
    assert (result.condition, len(result.pods)) == ("Complete", 2), result.logs()
    assert "shard 0/2: 2 file(s), 700 predictions, 0 errors in 700 lines" in result.logs(0), result.logs(0)
    assert "shard 1/2: 1 file(s), 300 predictions, 1 errors in 301 lines" in result.logs(1), result.logs(1)
    local = digits / "local"
    for part in range(3):  # same predictions, keys, order and error rows as the local batch
        assert _s3_rows(c, f"predictions/part-{part}.jsonl.out") == _rows(local / f"part-{part}.jsonl.out")
    assert _s3_rows(c, "predictions/errors.jsonl") == _rows(local / "errors.jsonl")
    summary = json.loads(c.get_object(Bucket="acme-predictions", Key="predictions/_SUMMARY.json")["Body"].read())
    assert (summary["lines"], summary["predictions"], summary["errors"], summary["shards"]) == (1001, 1000, 1, 2)
    assert summary["within_budget"] is True and [s["files"] for s in summary["per_shard"]] == [2, 1]
    # every object ever written (the bucket is versioned): each shard's summary was PUT once, to its
    # final key; nothing was written aside, copied or deleted
    versions = c.list_object_versions(Bucket="acme-predictions", Prefix="predictions/_shards/")
    assert "DeleteMarkers" not in versions
    keys = sorted(v["Key"].rsplit("/", 1)[1] for v in versions["Versions"])
    assert keys == ["errors-0.jsonl", "errors-1.jsonl", "summary-0.json", "summary-1.json"]
    assert adapter.status(handle).state == JobState.SUCCEEDED


def test_digits_batch_on_s3_over_the_budget_fails_the_whole_job(adapter, fake, s3_image_python, digits, tmp_path, s3):
    handle, result, c = _k8s_s3_run(adapter, fake, s3_image_python, digits, tmp_path, s3, budget=0.0)
    assert (result.condition, result.reason) == ("Failed", "PodFailurePolicy"), result.logs()
    assert len(result.pods) == 2, "a budget failure is not retried"
    assert sum(len(_s3_rows(c, f"predictions/part-{p}.jsonl.out")) for p in range(3)) == 1001
    summary = json.loads(c.get_object(Bucket="acme-predictions", Key="predictions/_SUMMARY.json")["Body"].read())
    assert (summary["errors"], summary["lines"], summary["within_budget"]) == (1, 1001, False)
    st = adapter.status(handle)
    assert st.state == JobState.FAILED
    assert "1 of 1001 lines failed" in st.message and "s3://acme-predictions/predictions/errors.jsonl" in st.message
