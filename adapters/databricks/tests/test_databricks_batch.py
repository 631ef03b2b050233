"""Batch prediction on Databricks (issue 18): the runs/submit plan, validated with databricks-sdk's
types, and the run itself started as a cluster starts a spark_python_task
(unijob.testing.contracts.databricks) with real pyspark in local mode: the quickstart's digits model
over 1,000 images gives the local batch's predictions, line for line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from unijob.errors import SpecError

EXAMPLE = Path(__file__).parents[3] / "examples" / "quickstart"
VOLUME = "/Volumes/main/default/batch"


def _spec(tmp_path: Path, **batch) -> Path:
    b = {"handler": "serve.py:Digits", "model": "./output", "input": f"{VOLUME}/in/digits.jsonl",
         "output": f"{VOLUME}/out", "replicas": 1, "instances_per_request": 50, "max_error_fraction": 0.01}
    b.update(batch)
    b = {k: v for k, v in b.items() if v is not None}
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump({"name": "digits-batch", "batch": b, "targets": {"databricks": {"cloud": "aws"}}}))
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy(EXAMPLE / "serve.py", tmp_path / "serve.py")
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "model.pkl").write_bytes(b"not read at plan time")
    return tmp_path


def _plan(dbx_adapter, path: Path, submission: str = "s-1"):
    from unijob.loading import load_spec

    return dbx_adapter.plan_batch(load_spec(path).spec, submission)


# ---- the plan ----------------------------------------------------------------------------------


def test_plan_is_one_runs_submit_that_the_sdk_types_accept(dbx_adapter, project):
    from unijob_adapters.databricks.plan import check_submit_body

    plan = _plan(dbx_adapter, _spec(project, replicas=3, instance_type={"databricks": "m5.2xlarge"}))
    assert plan.kind == "batch" and [r.api for r in plan.requests] == ["POST /api/2.2/jobs/runs/submit"]
    body = plan.requests[0].body
    check_submit_body(body, real=True)  # databricks-sdk's own SubmitTask, not the cached stand-ins
    [task] = body["tasks"]
    cluster = task["new_cluster"]
    assert cluster["num_workers"] == 3 and cluster["node_type_id"] == "m5.2xlarge"
    assert plan.resources.instance_count == 4 and plan.resources.instance_type == "m5.2xlarge"
    spt = task["spark_python_task"]
    config = json.loads(spt["parameters"][0])
    dest = spt["python_file"].rsplit("/", 1)[0]
    assert spt["python_file"].endswith("/_unijob_batch.py")
    assert config == {"engine": "spark", "handler": "serve.py:Digits", "base_dir": dest, "model": f"{dest}/output",
                      "input": f"{VOLUME}/in/digits.jsonl", "output": f"{VOLUME}/out", "replicas": 3,
                      "instances_per_request": 50, "max_error_fraction": 0.01, "parameters": {}}
    kinds = {u.kind for u in plan.uploads}
    assert kinds == {"directory", "file", "runtime-wheel"}
    wheel = next(u for u in plan.uploads if u.kind == "runtime-wheel")
    assert task["libraries"] == [{"whl": wheel.destination}]


def test_one_replica_is_a_single_node_cluster_and_dbfs_maps_to_its_fuse_path(dbx_adapter, project):
    plan = _plan(dbx_adapter, _spec(project, input="dbfs:/data/digits", output="dbfs:/Volumes/main/default/batch/o",
                                    model="dbfs:/models/digits"))
    cluster = plan.requests[0].body["tasks"][0]["new_cluster"]
    assert cluster["num_workers"] == 0 and cluster["spark_conf"]["spark.databricks.cluster.profile"] == "singleNode"
    config = json.loads(plan.requests[0].body["tasks"][0]["spark_python_task"]["parameters"][0])
    assert config["engine"] == "pool"
    assert (config["input"], config["output"], config["model"]) == (
        "/dbfs/data/digits", "/Volumes/main/default/batch/o", "/dbfs/models/digits")


def test_a_unity_catalog_version_is_refused_with_where_to_look(dbx_adapter, project):
    """`unijob batch` resolves models:/main.ml.digits@champion to the version Model Serving serves;
    the batch task reads a path, so the plan says which one to give."""
    with pytest.raises(SpecError) as e:
        _plan(dbx_adapter, _spec(project, model="models:/main.ml.digits/1"))
    assert e.value.issues[0].loc == ("batch", "model") and "Unity Catalog model version" in e.value.message
    assert "unijob models show" in e.value.message


def test_the_wheel_carries_the_batch_runner_and_the_jobs_wheel_does_not():
    import io
    import zipfile

    from unijob.bundle import runtime_wheel

    def names(w):
        return set(zipfile.ZipFile(io.BytesIO(w.data)).namelist())

    plain, serving = runtime_wheel(["databricks"]), runtime_wheel(["databricks"], batch=True)
    assert "unijob/batch/runner.py" in names(serving) and "unijob/serve/handler.py" in names(serving)
    assert not any(n.startswith(("unijob/batch/", "unijob/serve/")) for n in names(plain))
    assert plain.filename != serving.filename


@pytest.mark.parametrize("change, field, words", [
    ({"input": "./digits.jsonl"}, "input", "Unity Catalog volume"),
    ({"output": "s3://bucket/preds"}, "output", "Unity Catalog volume"),
    ({"output": "/Volumes/main/default"}, "output", "/Volumes/<catalog>/<schema>/<volume>"),
    ({"output": f"{VOLUME}/in/digits.jsonl/preds"}, "output", "inside the input"),
    ({"handler": "serv.py:Digits"}, "handler", "serve.py:Digits"),
    ({"handler": None, "image": "ghcr.io/x/serve:1"}, "image", "serving image"),
    ({"model": "models:/digits@champion"}, "model", "models:/digits@champion"),
    ({"model": "./no-such-model"}, "model", "does not exist"),
    ({"accelerator": "H100:8"}, "targets.databricks.spark_version", "batch.accelerator asks for H100:8"),
    ({"accelerator": "H100:3"}, "accelerator", "Databricks on aws"),
])
def test_bad_batch_sections_name_the_field_and_send_nothing(dbx_env, project, change, field, words, monkeypatch,
                                                            tmp_path, capsys):
    from unijob.cli import main

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    path = _spec(project, **change)
    if change.get("accelerator"):
        doc = yaml.safe_load(path.read_text())
        doc["targets"]["databricks"]["spark_version"] = "15.4.x-cpu-ml-scala2.12"
        path.write_text(yaml.safe_dump(doc))
    assert main(["batch", str(path), "-t", "databricks"]) == 2
    err = capsys.readouterr().err
    assert (field if "." in field else f"batch.{field}") in err and words in err, err
    assert dbx_env.runs == {} and dbx_env.files == {}


# ---- the run, as a cluster runs it ------------------------------------------------------------


@pytest.fixture(scope="session")
def spark_batch_python(tmp_path_factory):
    """A Databricks Runtime ML driver's Python for batch runs: scikit-learn, pyspark, pandas and
    pyarrow (mapInPandas moves the chunks as Arrow batches), no unijob; or a skip saying why not."""
    from unijob.testing.contracts import job_python

    if shutil.which("java") is None:
        pytest.skip("pyspark needs a Java runtime (java 17+) on PATH")
    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["scikit-learn", "pyspark", "pandas", "pyarrow"])


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """The quickstart with a trained ./output (3 epochs) and 1,000 keyed digit images, the 500th line
    not JSON."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    from unijob.testing.jobs import trained_quickstart

    base = trained_quickstart(EXAMPLE, tmp_path_factory.mktemp("digits"))
    lines = [json.dumps({"key": i, "instance": img}) for i, img in enumerate(load_digits().data[:1000].astype(int).tolist())]
    lines.insert(499, "{not json")
    (base / "digits.jsonl").write_text("\n".join(lines) + "\n")
    return base


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _run_on_databricks(fake, python, digits: Path, tmp_path: Path, budget: float, monkeypatch, replicas: int):
    import unijob
    from unijob.testing.contracts.databricks import DatabricksContract

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    fake.files[f"{VOLUME}/in/digits.jsonl"] = (digits / "digits.jsonl").read_bytes()  # already in the volume
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(digits / "serve.py", project / "serve.py")
    shutil.copytree(digits / "output", project / "output")
    job = unijob.batch_predict(str(_spec(project, replicas=replicas, max_error_fraction=budget)), "databricks")
    [rid] = list(fake.runs)
    runner = DatabricksContract(fake.runs[rid]["submitted"], python, tmp_path / "cluster", files=fake.files,
                                sink=fake, task_run_id=fake.task_run_ids(rid)[0])
    result = runner.run(600)
    return job, result, runner.local(f"{VOLUME}/out")


@pytest.mark.slow
@pytest.mark.parametrize("replicas, python, engine", [
    (2, "spark_batch_python", "mapInPandas over"),  # worker nodes: Spark (local mode here)
    (1, "image_python", "a pool of"),               # single-node: the driver's process pool, no pyspark needed
])
def test_digits_batch_on_databricks_equals_the_local_batch(dbx_env, digits, tmp_path, monkeypatch, request,
                                                          replicas, python, engine):
    from unijob.batch.runner import run

    local = tmp_path / "local-out"
    run({"handler": "serve.py:Digits", "base_dir": str(digits), "model": str(digits / "output"),
         "input": str(digits / "digits.jsonl"), "output": str(local), "replicas": 2,
         "instances_per_request": 50, "max_error_fraction": 0.01})
    job, result, out = _run_on_databricks(dbx_env, request.getfixturevalue(python), digits, tmp_path, 0.01,
                                          monkeypatch, replicas)
    assert result.result_state == "SUCCESS", result.logs[-4000:]
    assert f"unijob batch: {engine}" in result.logs

    rows = _rows(out / "digits.jsonl.out")
    assert len(rows) == 1001  # one line out per line in
    assert rows == _rows(local / "digits.jsonl.out")
    good = [r for r in rows if "prediction" in r]
    assert [r["key"] for r in good] == list(range(1000))
    assert rows[499] == {"error": rows[499]["error"], "line": 500} and "not JSON" in rows[499]["error"]
    errors = _rows(out / "errors.jsonl")
    assert [(e["file"], e["line"]) for e in errors] == [("digits.jsonl", 500)]
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert (summary["lines"], summary["predictions"], summary["errors"]) == (1001, 1000, 1)

    st = job.status()
    assert st.state.value == "SUCCEEDED", st.message
    assert any("1000 predictions, 1 errors in 1001 lines" in line for line in job.logs())


@pytest.mark.slow
def test_errors_over_the_budget_fail_the_run_with_the_reason(dbx_env, image_python, digits, tmp_path, monkeypatch):
    job, result, out = _run_on_databricks(dbx_env, image_python, digits, tmp_path, 0.0, monkeypatch, 1)
    assert result.result_state == "FAILED"
    assert result.error.startswith("BatchFailed: FAILED: 1 of 1001 lines failed"), result.error
    assert len(_rows(out / "digits.jsonl.out")) == 1001  # the other lines were still predicted
    st = job.status()
    assert st.state.value == "FAILED" and "error budget" in st.message and "errors.jsonl" in st.message, st.message


def test_a_batch_run_is_cancelled_and_listed_as_a_job(dbx_env, project, monkeypatch, tmp_path):
    import unijob

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    job = unijob.batch_predict(str(_spec(project, replicas=2)), "databricks")
    [rid] = list(dbx_env.runs)
    assert job.native_id == str(rid) and job.target == "databricks"
    assert dbx_env.runs[rid]["submitted"]["tasks"][0]["spark_python_task"]["python_file"].endswith("/_unijob_batch.py")
    dbx_env.set_state(rid, "RUNNING", message="In run")
    assert job.status().state.value == "RUNNING"
    job.cancel()
    assert job.status().state.value == "CANCELLED"
    assert [j.id for j in unijob.jobs(target="databricks")] == [job.id]
