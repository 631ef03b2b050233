"""Done-when of #8: the quickstart's model, served locally, answers `unijob invoke`; the same
handler (examples/quickstart/serve.py) passes SageMaker's and Vertex's container contracts.

The model is trained once for this module by running examples/quickstart/train.py as the local
target runs it (3 epochs: what is checked is serving, not accuracy).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from unijob.cli import main  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
REQUEST = json.loads((EXAMPLE / "request.json").read_text())
LABELS = [0, 1, 2]  # request.json holds load_digits() images 0, 1 and 2, whose labels are these

_spec = importlib.util.spec_from_file_location("serve_harness", Path(__file__).parent / "serve_handler" / "harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of examples/quickstart with a trained ./output/model.pkl."""
    base = tmp_path_factory.mktemp("quickstart")
    for name in ("train.py", "serve.py", "endpoint.yaml", "request.json"):
        shutil.copy(EXAMPLE / name, base / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
    env.update(UNIJOB_HYPERPARAMETERS=json.dumps({"epochs": 3}), UNIJOB_OUTPUT_DIR=str(base / "output"))
    out = subprocess.run([sys.executable, "train.py"], cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (base / "output" / "model.pkl").exists()
    return base


@pytest.fixture
def servers(tmp_path):
    s = harness.Servers(tmp_path)
    yield s
    s.close()


def test_quickstart_model_answers_unijob_invoke_locally(project, _isolated_home, live_processes, capsys):
    spec = str(project / "endpoint.yaml")
    assert main(["deploy", spec]) == 0
    try:
        assert "deployed endpoint digits on local" in capsys.readouterr().out
        assert main(["invoke", "digits", "--data", f"@{project / 'request.json'}", "--variant", "current"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert [p["digit"] for p in answer["predictions"]] == LABELS
        assert all(0.0 <= p["probability"] <= 1.0 for p in answer["predictions"])

        assert main(["invoke", "digits", "--data", f"@{project / 'request.json'}", "--variant", "candidate"]) == 0
        top3 = json.loads(capsys.readouterr().out)["predictions"]
        assert [p["digits"][0] for p in top3] == LABELS and all(len(p["digits"]) == 3 for p in top3)

        # the 90/10 canary, as the example's comment shows it
        assert main(["invoke", "digits", "--data", f"@{project / 'request.json'}", "--repeat", "200"]) == 0
        summary = capsys.readouterr().err
        assert "current 180 (90.0%)" in summary and "candidate 20 (10.0%)" in summary, summary

        # a bad instance is the handler's own 400; the endpoint keeps serving
        assert main(["invoke", "digits", "--data", '{"instances": [[1, 2, 3]]}', "--variant", "current"]) == 4
        assert "64 numbers" in capsys.readouterr().err
        assert main(["invoke", "digits", "--data", f"@{project / 'request.json'}", "--variant", "current"]) == 0
    finally:
        assert main(["undeploy", "digits"]) == 0
    assert live_processes(_isolated_home) == []


def test_quickstart_handler_speaks_sagemakers_contract(project, servers, tmp_path):
    port = harness.free_port()
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER="serve:Digits", SAGEMAKER_BIND_TO_PORT=str(port),
                            UNIJOB_MODEL_DIR=str(project / "output"), UNIJOB_SERVE_HOST="127.0.0.1")
    server = servers.serve("serve", env=env, port=port, cwd=project, name="sagemaker")  # docker run IMAGE serve
    server.wait_for("/ping", 200)
    request = harness.invoke_endpoint_request(json.dumps(REQUEST).encode(), variant="AllTraffic")
    r = server.post("/invocations", content=request["body"], headers=request["headers"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert [p["digit"] for p in r.json()["predictions"]] == LABELS
    bare = server.post("/invocations", json=REQUEST["instances"])  # a bare array in, a bare array out
    assert [p["digit"] for p in bare.json()] == LABELS


def test_quickstart_handler_speaks_vertex_contract(project, servers, tmp_path):
    aiplatform_v1 = pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    port = harness.free_port()
    health, predict = "/v1/endpoints/7/deployedModels/8", "/v1/endpoints/7/deployedModels/8:predict"
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER="serve:Digits", AIP_HTTP_PORT=str(port), AIP_HEALTH_ROUTE=health,
                            AIP_PREDICT_ROUTE=predict, AIP_STORAGE_URI=(project / "output").as_uri(),
                            UNIJOB_SERVE_HOST="127.0.0.1")
    server = servers.serve(env=env, port=port, cwd=project, name="vertex")
    server.wait_for(health, 200)
    request = aiplatform_v1.PredictRequest(endpoint="projects/1/locations/us-central1/endpoints/7")
    request.instances.extend(REQUEST["instances"])
    body = json.loads(aiplatform_v1.PredictRequest.to_json(request))
    body.pop("endpoint")
    r = server.post(predict, json=body)
    assert r.status_code == 200, r.text
    response = aiplatform_v1.PredictResponse.from_json(r.text, ignore_unknown_fields=False)
    assert [int(p["digit"]) for p in response.predictions] == LABELS
