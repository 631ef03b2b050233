"""Issue 18 on Vertex AI: batch prediction jobs run the way Vertex runs them. The fake creates the
BatchPredictionJob and runs it under unijob.testing.contracts.vertex_batch: the Model's serving
container (`python -m unijob.serve` with UNIJOB_HANDLER and the AIP_* variables) on each replica,
the JSON Lines input posted `batchSize` instances at a time, Vertex's predictions_*/errors_*
files written to the fake's Cloud Storage. The quickstart's digits model predicts the same 1,000
instances on Vertex and on the local target."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("sklearn")

import unijob  # noqa: E402
from unijob.cli import main  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart"
SERVE = "us-docker.pkg.dev/p/r/unijob-serve:0.1"
BUCKET = "gs://digits-bucket"
BAD_LINE = 501  # the malformed line's number in digits.jsonl
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """examples/quickstart's train.py and serve.py, a model trained for 3 epochs in ./output, and
    digits.jsonl: 1,000 digit images (one instance per line, Vertex's input format) with one
    line that is not JSON at line 501."""
    from sklearn.datasets import load_digits

    from unijob.testing.jobs import trained_quickstart

    base = trained_quickstart(EXAMPLE, tmp_path_factory.mktemp("quickstart"))
    lines = [json.dumps(img) for img in load_digits().data[:1000].astype(int).tolist()]
    lines.insert(BAD_LINE - 1, '{"not": json')
    (base / "digits.jsonl").write_text("\n".join(lines) + "\n")
    return base


@pytest.fixture
def vertex(adapter, fake, project, tmp_path, monkeypatch):
    """The fake runs batch jobs with this test's Python as the serving image's (it has unijob and
    scikit-learn) and ``project`` as its working directory; the model and input are in its Cloud
    Storage; ``unijob`` resolves ``-t vertex`` to the adapter pointed at the fake."""
    from unijob import registry

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    real = registry.get
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter if name == "vertex" else real(name))
    fake.batch_runtime = {"python": sys.executable, "program_dir": str(project), "workdir": str(tmp_path / "vertex"),
                          "timeout": 300.0}
    fake.objects[f"{BUCKET}/model/model.pkl"] = (project / "output" / "model.pkl").read_bytes()
    fake.objects[f"{BUCKET}/in/digits.jsonl"] = (project / "digits.jsonl").read_bytes()
    return fake


def _spec(path: Path, block, **batch) -> Path:
    b = {"handler": "serve.py:Digits", "model": f"{BUCKET}/model/", "input": f"{BUCKET}/in/digits.jsonl",
         "output": f"{BUCKET}/out/", "replicas": 2, "instances_per_request": 50, "max_error_fraction": 0.01}
    b.update(batch)
    path.write_text(yaml.safe_dump({"name": "digits-batch", "batch": b,
                                    "targets": {"vertex": block(serving_image=SERVE)}}, sort_keys=False))
    return path


def _files(fake, out_dir: str, kind: str) -> list[dict]:
    names = sorted(u for u in fake.objects if u.startswith(out_dir + f"/{kind}_"))
    return [json.loads(line) for u in names for line in fake.objects[u].decode().splitlines()]


def test_cli_batch_equals_the_local_batch(vertex, project, block, tmp_path, capsys):
    spec = _spec(tmp_path / "batch.yaml", block)
    assert main(["batch", str(spec), "-t", "vertex", "--wait"]) == 0
    out = capsys.readouterr()
    job = unijob.jobs(target="vertex")[0]
    st = job.status()
    assert (st.state.value, st.native_state) == ("SUCCEEDED", "JOB_STATE_SUCCEEDED"), st.message
    body = vertex.batch_jobs[job.native_id]
    out_dir = body["outputInfo"]["gcsOutputDirectory"]
    assert out_dir.startswith(f"{BUCKET}/out/prediction-digits-batch-batch-") and out_dir in st.message
    assert body["completionStats"] == {"successfulCount": "1000", "failedCount": "1"}  # incompleteCount 0: left out
    assert "1000 predictions, 1 errors" in st.message and job.native_id in out.out

    # Vertex's own output: {"instance", "prediction"} lines over the replicas' files, in no set order
    preds = _files(vertex, out_dir, "predictions")
    # one file per replica that predicted (under load one replica may be ready and take every batch first)
    assert 1 <= len({u for u in vertex.objects if u.startswith(out_dir + "/predictions_")}) <= 2
    assert [r.task for r in vertex.batch_outcomes[job.native_id].replicas] == ["replica-0", "replica-1"]
    assert sorted(json.dumps(p["instance"]) for p in preds) == sorted(
        json.dumps(json.loads(x)) for i, x in enumerate((project / "digits.jsonl").read_text().splitlines(), 1)
        if i != BAD_LINE)
    errors = _files(vertex, out_dir, "errors")
    assert len(errors) == 1 and errors[0]["instance"] == '{"not": json' and errors[0]["error"]["code"] == 3
    assert f"{BUCKET}/in/digits.jsonl:{BAD_LINE}:" in errors[0]["error"]["message"]

    # the local target, same handler, model and lines (Python API); the spec sits beside serve.py
    local = _spec(project / "local.yaml", block, model=str(project / "output"), input=str(project / "digits.jsonl"),
                  output=str(tmp_path / "local-out"))
    lj = unijob.batch_predict(str(local), wait=True)
    assert lj.state.value == "SUCCEEDED", lj.message
    rows = [json.loads(x) for x in (tmp_path / "local-out" / "digits.jsonl.out").read_text().splitlines()]
    assert len(rows) == 1001 and rows[BAD_LINE - 1]["line"] == BAD_LINE and "error" in rows[BAD_LINE - 1]
    inputs = [x for i, x in enumerate((project / "digits.jsonl").read_text().splitlines(), 1) if i != BAD_LINE]
    local_by_instance = {json.dumps(json.loads(x)): r["prediction"]
                         for x, r in zip(inputs, [r for r in rows if "prediction" in r])}
    assert all(local_by_instance[json.dumps(p["instance"])] == p["prediction"] for p in preds)
    from sklearn.datasets import load_digits

    truth = {json.dumps(img): int(y) for img, y in zip(load_digits().data[:1000].astype(int).tolist(),
                                                      load_digits().target[:1000])}
    assert sum(truth[json.dumps(p["instance"])] == p["prediction"]["digit"] for p in preds) / 1000 > 0.8

    # the containers' own lines, through Cloud Logging
    lines = list(job.logs())
    assert any(ln.startswith(("[replica-0] ", "[replica-1] ")) for ln in lines)
    assert vertex.errors == []


def test_python_api_cancel_stops_the_replicas(vertex, project, block, tmp_path):
    (project / "slow.py").write_text("import time\nfrom serve import Digits\n\n\nclass Slow(Digits):\n"
                                     "    def predict(self, instances, parameters):\n        time.sleep(0.5)\n"
                                     "        return super().predict(instances, parameters)\n")
    spec = _spec(tmp_path / "slow.yaml", block, handler="slow.py:Slow", replicas=1, instances_per_request=10)
    job = unijob.batch_predict(str(spec), "vertex")
    deadline = time.monotonic() + 120
    while not any(u.endswith("predictions_00001.jsonl") for u in vertex.objects) and time.monotonic() < deadline:
        if job.status().native_state == "JOB_STATE_RUNNING" and any("startup complete" in ln for ln in job.logs()):
            break  # uvicorn in the container is serving
        time.sleep(0.2)
    time.sleep(1.0)
    job.cancel()
    assert job.wait(timeout=120).value == "CANCELLED"
    body = vertex.batch_jobs[job.native_id]
    assert body["state"] == "JOB_STATE_CANCELLED" and int(body["completionStats"]["incompleteCount"]) > 0
    outcome = vertex.batch_outcomes[job.native_id]
    assert all(r.exit_code is not None for r in outcome.replicas)  # the containers were stopped
    assert vertex.errors == []


def test_errors_past_the_budget_fail_the_job(vertex, project, block, tmp_path):
    vertex.objects[f"{BUCKET}/in/few.jsonl"] = b"[1, 2]\n" + (json.dumps([0] * 64) + "\n").encode() * 3
    spec = _spec(tmp_path / "few.yaml", block, input=f"{BUCKET}/in/few.jsonl", replicas=1, instances_per_request=2,
                 max_error_fraction=0.1)
    job = unijob.batch_predict(str(spec), "vertex", wait=True)
    assert job.state.value == "FAILED"
    st = job.status()
    assert st.native_state == "JOB_STATE_SUCCEEDED" and "2 of 4 instances failed" in st.message, st.message
    out_dir = vertex.batch_jobs[job.native_id]["outputInfo"]["gcsOutputDirectory"]
    errors = _files(vertex, out_dir, "errors")  # the container answered 400 for the request holding [1, 2]
    assert [e["instance"] for e in errors] == [[1, 2], [0] * 64] and errors[0]["error"]["code"] == 3
    assert "64 numbers" in errors[0]["error"]["message"]
