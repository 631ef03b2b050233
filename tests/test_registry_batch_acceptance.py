"""Done-when of the registry and batch issue, on the local target: the quickstart model registered
on a real MLflow server, aliased `champion`, deployed as models:/digits@champion; a local batch
over 1,000 digit images writes 1,000 predictions equal to that endpoint's answers for the same
instances."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("sklearn")

import unijob  # noqa: E402
import unijob.models as models  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
MLFLOW = Path(sys.executable).with_name("mlflow")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not MLFLOW.exists(), reason="mlflow is not installed (pip install 'unijob[registry]')")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of examples/quickstart with a trained ./output (3 epochs) and 1,000 digit images."""
    from sklearn.datasets import load_digits

    from unijob.testing.jobs import trained_quickstart

    base = trained_quickstart(EXAMPLE, tmp_path_factory.mktemp("quickstart"))
    images = load_digits().data[:1000].astype(int).tolist()
    with open(base / "digits.jsonl", "w") as f:
        for i, img in enumerate(images):
            f.write(json.dumps({"key": i, "instance": img}) + "\n")
    return base


def test_registered_champion_serves_and_batch_agrees(project, mlflow_server, monkeypatch, live_processes,
                                                      _isolated_home):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = f"digits-{os.getpid()}"
    v = models.register(str(project / "output"), name, alias="champion", metadata={"epochs": "3"})
    models.approve(name, v.version)
    uri = f"models:/{name}@champion"

    (project / "endpoint.yaml").write_text(yaml.safe_dump({"name": "digits", "endpoint": {
        "handler": "serve.py:Digits", "model": uri, "min_replicas": 1, "max_replicas": 1}}))
    (project / "batch.yaml").write_text(yaml.safe_dump({"name": "digits-batch", "batch": {
        "handler": "serve.py:Digits", "model": uri, "input": "./digits.jsonl", "output": "./predictions",
        "replicas": 2, "instances_per_request": 50}}))

    ep = unijob.deploy(str(project / "endpoint.yaml"))
    try:
        assert any(uri in n and "Approved" in n for n in ep.notes), ep.notes
        instances = [json.loads(line)["instance"] for line in (project / "digits.jsonl").read_text().splitlines()]
        online = []
        for i in range(0, len(instances), 100):
            online += ep.invoke(instances[i:i + 100]).predictions
    finally:
        ep.undeploy()
    assert live_processes(_isolated_home) == []

    job = unijob.batch_predict(str(project / "batch.yaml"), wait=True)
    assert job.state.value == "SUCCEEDED", job.message
    rows = [json.loads(x) for x in (project / "predictions" / "digits.jsonl.out").read_text().splitlines()]
    assert len(rows) == 1000 and [r["key"] for r in rows] == list(range(1000))
    assert [r["prediction"] for r in rows] == online
    from sklearn.datasets import load_digits

    labels = load_digits().target[:1000]
    assert sum(r["prediction"]["digit"] == y for r, y in zip(rows, labels)) / 1000 > 0.8
