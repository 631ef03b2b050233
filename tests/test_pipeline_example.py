"""Done-when of the pipelines issue, end to end on the local target with examples/pipeline: train the
quickstart model, evaluate it on held-out data, register it only if accuracy >= 0.95, deploy it as a
90/10 canary next to the previous champion; with a forced low accuracy the run stops at the
condition and deploys nothing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

import unijob  # noqa: E402
import unijob.models as models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "examples"
MLFLOW = Path(sys.executable).with_name("mlflow")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not MLFLOW.exists(), reason="mlflow is not installed (pip install 'unijob[registry]')")]


@pytest.fixture
def examples(tmp_path, mlflow_server, monkeypatch):
    """A copy of examples/quickstart and examples/pipeline, and a registry whose 'digits' has a champion."""
    for name in ("quickstart", "pipeline"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("output", "checkpoints"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return tmp_path


def test_pipeline_trains_evaluates_registers_and_deploys_a_canary(examples, live_processes, _isolated_home):
    name = f"digits-{os.getpid()}"
    pipeline = examples / "pipeline" / "pipeline.yaml"
    text = pipeline.read_text().replace("name: digits\n", f"name: {name}\n")
    pipeline.write_text(text)
    ep = examples / "pipeline" / "endpoint.yaml"
    ep.write_text(ep.read_text().replace("models:/digits@", f"models:/{name}@"))

    # run 1 with a forced low accuracy: stops at the condition, registers and deploys nothing
    low = unijob.run_pipeline(pipeline, params={"label_noise": 0.5, "epochs": 12}, wait=True)
    assert low.state == "SUCCEEDED", low.steps
    assert low.steps["evaluate"]["metrics"]["accuracy"] < 0.95
    assert [low.steps[s]["state"] for s in ("register", "deploy")] == ["SKIPPED", "SKIPPED"]
    assert "condition false" in low.steps["register"]["message"]
    assert unijob.endpoints() == []
    from unijob.errors import NotFound

    with pytest.raises(NotFound):
        models.versions(name)

    # a champion exists (the model the skipped run trained, registered by hand as the team would)
    champion = models.register(low.steps["train"]["outputs"]["model"], name, alias="champion")
    models.approve(name, champion.version)

    # run 2: accurate enough -> registered as candidate, deployed 90/10 against the champion
    good = unijob.run_pipeline(pipeline, params={"epochs": 12}, wait=True)
    try:
        assert good.state == "SUCCEEDED", good.steps
        acc = good.steps["evaluate"]["metrics"]["accuracy"]
        assert acc >= 0.95
        reg = good.steps["register"]["outputs"]
        v = models.show(name, reg["version"])
        assert v.status == "Approved" and v.aliases == ["candidate"] and v.metadata["accuracy"] == str(acc)
        ep = unijob.endpoint("digits")
        status = ep.status()
        assert status.traffic == {"champion": 90, "candidate": 10}
        answer = ep.invoke([[0] * 64], variant="candidate")
        assert answer.variant == "candidate" and "digit" in answer.predictions[0]
    finally:
        for e in unijob.endpoints():
            e.undeploy()
    assert live_processes(_isolated_home) == []
