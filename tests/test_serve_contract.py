"""One handler, one container contract, three platforms: each test starts ``python -m unijob.serve``
the way that platform starts the serving image and talks to it the way that platform does, with
requests built and answers read by the vendor's own types (botocore's service model for SageMaker,
``google.cloud.aiplatform_v1`` for Vertex). Then ``unijob serve-image``: the Dockerfile, and the
image's behaviour without Docker (its exact ENTRYPOINT and ENV run on a copy of the build context).

Every test serves tests/serve_handler/predictor.py (the same file; the image tests copy it into
their build context as the handler's ``predictor.py``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("numpy")  # the handler's model is NumPy

from unijob.cli import main  # noqa: E402
from unijob.serve.image import DOCKERIGNORE  # noqa: E402

_spec = importlib.util.spec_from_file_location("serve_harness", Path(__file__).parent / "serve_handler" / "harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

PREDICTOR_REF = f"{harness.PREDICTOR}:Predictor"
INSTANCES = [[1.0, 1.0], [2.0, 3.0], [-1.5, 0.25]]


@pytest.fixture
def servers(tmp_path):
    s = harness.Servers(tmp_path)
    yield s
    s.close()


# ---- SageMaker ----------------------------------------------------------------------------------

def test_the_invoke_endpoint_shape_is_real():
    # The validator is live: a dict body (not bytes) and a missing endpoint name are rejected.
    botocore_session = pytest.importorskip("botocore.session")
    from botocore.validate import ParamValidator

    shape = botocore_session.get_session().get_service_model("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape
    report = ParamValidator().validate({"Body": {"instances": []}, "ContentType": "application/json"}, shape)
    assert "Missing required parameter" in report.generate_report() and "Invalid type for parameter Body" in report.generate_report()


def _sagemaker_server(servers, tmp_path, model: Path):
    port = harness.free_port()
    # SageMaker: `docker run IMAGE serve`, the model under /opt/ml/model, port 8080 unless it sets
    # SAGEMAKER_BIND_TO_PORT (multi-container endpoints). Port 8080 may be taken on this machine
    # and /opt/ml/model is not writable here, so the test uses SAGEMAKER_BIND_TO_PORT with a free
    # port and UNIJOB_MODEL_DIR pointing at the same layout in a temporary directory; the server
    # listens on 127.0.0.1 (UNIJOB_SERVE_HOST) instead of the container's 0.0.0.0.
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER=PREDICTOR_REF, SAGEMAKER_BIND_TO_PORT=str(port),
                            UNIJOB_MODEL_DIR=str(model), UNIJOB_SERVE_HOST="127.0.0.1")
    server = servers.serve("serve", env=env, port=port, name="sagemaker")
    server.wait_for("/ping", 200)
    return server


def _invoke(server, payload) -> object:
    request = harness.invoke_endpoint_request(json.dumps(payload).encode())
    r = server.post("/invocations", content=request["body"], headers=request["headers"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_sagemaker_contract(servers, tmp_path):
    server = _sagemaker_server(servers, tmp_path, harness.write_model(tmp_path / "opt-ml-model"))
    assert server.get("/ping").status_code == 200
    assert _invoke(server, {"instances": INSTANCES}) == {"predictions": harness.expected(INSTANCES)}
    assert _invoke(server, {"instances": INSTANCES, "parameters": {"scale": 3}}) == {"predictions": harness.expected(INSTANCES, 3)}
    assert _invoke(server, INSTANCES) == harness.expected(INSTANCES)  # a bare array in, a bare array out
    # What a client gets back for a bad body is a 4xx with a message, not a dropped connection.
    request = harness.invoke_endpoint_request(b"instances=1", content_type="application/x-www-form-urlencoded")
    r = server.post("/invocations", content=request["body"], headers=request["headers"])
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_sagemaker_model_tar_gz_is_extracted_and_loaded(servers, tmp_path):
    # SageMaker's artifact is a model.tar.gz with the files at its root (ModelDataUrl).
    archive = tmp_path / "model.tar.gz"
    data = json.dumps(harness.MODEL).encode()
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("model.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    server = _sagemaker_server(servers, tmp_path, archive)
    assert _invoke(server, {"instances": INSTANCES}) == {"predictions": harness.expected(INSTANCES)}
    extracted = list((tmp_path / "model-cache" / "unijob-models").glob("model-*/model.json"))
    assert len(extracted) == 1 and json.loads(extracted[0].read_text()) == harness.MODEL
    assert f"from {extracted[0].parent}" in server.log()


# ---- Vertex AI ----------------------------------------------------------------------------------

ENDPOINT_ID, DEPLOYED_MODEL_ID = "123", "456"
HEALTH_ROUTE = f"/v1/endpoints/{ENDPOINT_ID}/deployedModels/{DEPLOYED_MODEL_ID}"
PREDICT_ROUTE = f"/v1/endpoints/{ENDPOINT_ID}/deployedModels/{DEPLOYED_MODEL_ID}:predict"


@pytest.mark.parametrize("storage", ["file-uri", "directory"])
def test_vertex_contract(servers, tmp_path, storage):
    aiplatform_v1 = pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    model = harness.write_model(tmp_path / "artifacts")
    port = harness.free_port()
    # The variables Vertex sets in a custom serving container (custom-container-requirements);
    # AIP_STORAGE_URI is a gs:// copy of the artifacts there, a local one here.
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER=PREDICTOR_REF, AIP_HTTP_PORT=str(port), AIP_HEALTH_ROUTE=HEALTH_ROUTE,
                            AIP_PREDICT_ROUTE=PREDICT_ROUTE, AIP_MODE="PREDICTION", AIP_ENDPOINT_ID=ENDPOINT_ID,
                            AIP_DEPLOYED_MODEL_ID=DEPLOYED_MODEL_ID, UNIJOB_SERVE_HOST="127.0.0.1",
                            AIP_STORAGE_URI=model.as_uri() if storage == "file-uri" else str(model))
    server = servers.serve(env=env, port=port, name="vertex")  # Vertex passes no arguments
    assert server.wait_for(HEALTH_ROUTE, 200).json() == {"status": "ok"}

    request = aiplatform_v1.PredictRequest(endpoint=f"projects/1/locations/us-central1/endpoints/{ENDPOINT_ID}",
                                           labels={"team": "search"})
    request.instances.extend(INSTANCES)
    request.parameters = {"scale": 2}
    body = json.loads(aiplatform_v1.PredictRequest.to_json(request))
    body.pop("endpoint")  # the endpoint is the URL; Vertex forwards the body to AIP_PREDICT_ROUTE
    r = server.post(PREDICT_ROUTE, json=body)
    assert r.status_code == 200, r.text
    response = aiplatform_v1.PredictResponse.from_json(r.text, ignore_unknown_fields=False)
    assert list(response.predictions) == pytest.approx(harness.expected(INSTANCES, 2))

    # Vertex's answer for a body that is not the envelope: a 400 the client can read.
    bad = server.post(PREDICT_ROUTE, json={"instance": INSTANCES})
    assert bad.status_code == 400 and 'did you mean "instances"' in bad.json()["error"]


# ---- Kubernetes ---------------------------------------------------------------------------------

def test_kubernetes_contract(servers, tmp_path):
    port = harness.free_port()
    model = harness.write_model(tmp_path / "model")
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER=PREDICTOR_REF, PORT=str(port), UNIJOB_MODEL_URI=model.as_uri(),
                            UNIJOB_SERVE_HOST="127.0.0.1")
    server = servers.serve(env=env, port=port, name="kubernetes")
    assert server.wait_for("/ready", 200).json() == {"status": "ok"}
    assert server.get("/live").json() == {"status": "alive", "ready": True}
    r = server.post("/predict", json={"instances": INSTANCES})
    assert r.status_code == 200 and r.json() == {"predictions": harness.expected(INSTANCES)}


# ---- unijob serve-image -------------------------------------------------------------------------

DOCKERFILE_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                           "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, ``\\`` continuations joined
    (https://docs.docker.com/reference/dockerfile/#format)."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction are skipped
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def env_of(instructions) -> dict[str, str]:
    """The ENV key=value pairs (the form the generator writes)."""
    env = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for pair in args.split():
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {args!r} is not in key=value form"
                env[key] = value
    return env


@pytest.fixture
def context(tmp_path, monkeypatch):
    """A build context: the shared handler as predictor.py and its requirements; the cwd."""
    ctx = tmp_path / "context"
    ctx.mkdir()
    shutil.copy(harness.PREDICTOR, ctx / "predictor.py")
    (ctx / "requirements.txt").write_text("numpy\n")
    monkeypatch.chdir(ctx)
    return ctx


def test_serve_image_writes_a_dockerfile_with_the_contract(context, capsys):
    assert main(["serve-image", "predictor:Predictor"]) == 0
    text = (context / "Dockerfile").read_text()
    ins = parse_dockerfile(text)
    assert {k for k, _ in ins} <= DOCKERFILE_INSTRUCTIONS
    assert ins[0] == ("FROM", "python:3.11-slim")
    from unijob import __version__

    assert ("RUN", f"python -m pip install unijob=={__version__}") in ins
    assert ("COPY", '["requirements.txt", "/opt/program/requirements.txt"]') in ins
    assert ("RUN", "python -m pip install -r /opt/program/requirements.txt") in ins
    assert ins.index(("COPY", ". /opt/program")) > ins.index(("RUN", "python -m pip install -r /opt/program/requirements.txt"))
    assert ("WORKDIR", "/opt/program") in ins and ("EXPOSE", "8080") in ins
    assert ("LABEL", "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true") in ins
    env = env_of(ins)
    assert env["UNIJOB_HANDLER"] == "predictor:Predictor" and env["PYTHONUNBUFFERED"] == "1"
    entry = [args for k, args in ins if k == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["python", "-m", "unijob.serve"]  # exec (JSON) form
    assert ins[-1][0] == "ENTRYPOINT"
    # the comments say what each platform expects, with the sources
    for needle in ("docker run IMAGE serve", "/ping", "/invocations", "/opt/ml/model", "SAGEMAKER_BIND_TO_PORT",
                   "AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE", "AIP_STORAGE_URI", "PORT", "/ready", "/live",
                   "https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html",
                   "https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements",
                   "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/"):
        assert needle in text, needle
    assert (context / ".dockerignore").read_text() == DOCKERIGNORE
    assert ".env" in DOCKERIGNORE.splitlines() and ".git" in DOCKERIGNORE.splitlines()
    err = capsys.readouterr().err
    assert "using" in err and "requirements.txt" in err


def test_serve_image_options(context, capsys):
    (context / "deps").mkdir()
    (context / "deps" / "serve.txt").write_text("numpy\n")
    assert main(["serve-image", "predictor:Predictor", "--base", "python:3.12-slim", "--requirements", "deps/serve.txt",
                 "--unijob-requirement", "unijob @ git+https://example.org/unijob.git", "-o", "-"]) == 0
    out = capsys.readouterr().out
    ins = parse_dockerfile(out)
    assert ins[0] == ("FROM", "python:3.12-slim")
    assert ("RUN", "python -m pip install 'unijob @ git+https://example.org/unijob.git'") in ins
    assert ("COPY", '["deps/serve.txt", "/opt/program/requirements.txt"]') in ins
    assert not (context / "Dockerfile").exists() and not (context / ".dockerignore").exists()  # -o - writes nothing


def test_serve_image_warns_when_the_handler_is_not_in_the_context(context, capsys):
    assert main(["serve-image", "predictor:Predictor", "-o", "-"]) == 0
    assert "warning" not in capsys.readouterr().err
    for ref, shown in (("serving.app:Predictor", "module 'serving'"), ("src/serve.py:Predictor", "src/serve.py")):
        assert main(["serve-image", ref, "-o", "-"]) == 0
        assert f"warning: {shown} is not in the build context" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["my handler"], "expected module:attr"),
    (["predictor:Predictor", "--base", "python:3.11 slim"], "base image"),
    (["predictor:Predictor", "--requirements", "missing.txt"], "does not exist"),
    (["predictor:Predictor", "--unijob-requirement", "unijob\nRUN rm -rf /"], "one pip requirement"),
    ([], "no handler"),
])
def test_serve_image_bad_input_is_exit_2_and_writes_nothing(context, capsys, args, message):
    assert main(["serve-image", *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in context.iterdir()) == ["predictor.py", "requirements.txt"]


def test_serve_image_requirements_outside_the_context_is_exit_2(context, tmp_path, capsys):
    (tmp_path / "elsewhere.txt").write_text("numpy\n")
    assert main(["serve-image", "predictor:Predictor", "--requirements", str(tmp_path / "elsewhere.txt")]) == 2
    assert "outside the build context" in capsys.readouterr().err
    assert not (context / "Dockerfile").exists()


def test_serve_image_never_overwrites_without_force(context, capsys):
    (context / "Dockerfile").write_text("FROM scratch\n")
    assert main(["serve-image", "predictor:Predictor"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (context / "Dockerfile").read_text() == "FROM scratch\n"
    assert not (context / ".dockerignore").exists()  # nothing half-done
    (context / ".dockerignore").write_text("data/\n")
    assert main(["serve-image", "predictor:Predictor", "--force"]) == 0
    assert "ENV UNIJOB_HANDLER=predictor:Predictor" in (context / "Dockerfile").read_text()
    assert (context / ".dockerignore").read_text() == "data/\n"  # the user's own is kept
    assert "kept the existing" in capsys.readouterr().err


SPEC = """\
name: ranker
image: python:3.11-slim
command: [python, -c, "print(1)"]
endpoint:
  model: s3://bucket/model.tar.gz
{endpoint}
"""


@pytest.mark.parametrize("endpoint, args, code, expect", [
    ("  handler: predictor:Predictor\n", [], 0, "ENV UNIJOB_HANDLER=predictor:Predictor"),
    ("  handler: predictor:Predictor\n", ["predictor:Predictor"], 0, "ENV UNIJOB_HANDLER=predictor:Predictor"),
    ("  handler: predictor:Predictor\n", ["other:Predictor"], 2, "not the spec's endpoint handler"),
    ("  handler: a:P\n  variants:\n    - {name: blue, weight: 90}\n    - {name: green, weight: 10, handler: b:P}\n",
     [], 2, "endpoint.variants: the variants serve different handlers (blue: a:P, green: b:P)"),
    ("  handler: a:P\n  variants:\n    - {name: blue, weight: 90}\n    - {name: green, weight: 10, handler: b:P}\n",
     ["b:P"], 0, "ENV UNIJOB_HANDLER=b:P"),
    ("  image: registry.example/serve:1\n", [], 2, "endpoint.handler: the endpoint serves an image"),
])
def test_serve_image_takes_the_handler_from_the_spec(context, capsys, endpoint, args, code, expect):
    (context / "job.yaml").write_text(SPEC.format(endpoint=endpoint))
    assert main(["serve-image", *args, "--spec", "job.yaml", "-o", "-"]) == code
    captured = capsys.readouterr()
    assert expect in (captured.out if code == 0 else captured.err)


def test_serve_image_spec_without_endpoint_is_exit_2(context, capsys):
    (context / "job.yaml").write_text("name: ranker\nimage: python:3.11-slim\ncommand: [python]\n")
    assert main(["serve-image", "--spec", "job.yaml"]) == 2
    assert "job.yaml" in capsys.readouterr().err and not (context / "Dockerfile").exists()


PLATFORMS = {
    # argv SageMaker appends, and the variables it sets (besides the image's ENV)
    "sagemaker": (["serve"], lambda port, model: {"SAGEMAKER_BIND_TO_PORT": str(port), "UNIJOB_MODEL_DIR": str(model)},
                  "/ping", "/invocations"),
    "vertex": ([], lambda port, model: {"AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
                                        "AIP_PREDICT_ROUTE": PREDICT_ROUTE, "AIP_STORAGE_URI": model.as_uri()},
               HEALTH_ROUTE, PREDICT_ROUTE),
    "kubernetes": ([], lambda port, model: {"PORT": str(port), "UNIJOB_MODEL_URI": model.as_uri()}, "/ready", "/predict"),
}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_the_image_serves_on_every_platform_minus_docker(context, servers, tmp_path, platform):
    """Run the generated image's ENTRYPOINT (+ what the platform appends) with its ENV, in a copy
    of the build context standing in for /opt/program; the interpreter is this one, where unijob
    and the requirements are installed as the image's RUN lines would install them."""
    assert main(["serve-image", "predictor:Predictor"]) == 0
    ins = parse_dockerfile((context / "Dockerfile").read_text())
    entrypoint = json.loads(next(args for k, args in ins if k == "ENTRYPOINT"))
    workdir = next(args for k, args in ins if k == "WORKDIR")
    assert ("COPY", f". {workdir}") in ins
    program = tmp_path / "image-root" / workdir.lstrip("/")
    shutil.copytree(context, program)  # COPY . /opt/program

    extra_args, platform_env, health, predict = PLATFORMS[platform]
    assert entrypoint[0] == "python"
    argv = [sys.executable, *entrypoint[1:], *extra_args]
    port = harness.free_port()
    model = harness.write_model(tmp_path / "model")
    env = harness.clean_env(tmp_path, **env_of(ins), **platform_env(port, model), UNIJOB_SERVE_HOST="127.0.0.1")
    assert env["UNIJOB_HANDLER"] == "predictor:Predictor"  # from the Dockerfile's ENV, nothing else
    server = servers.start(argv, env=env, port=port, cwd=program, name=f"image-{platform}")
    server.wait_for(health, 200)
    r = server.post(predict, json={"instances": INSTANCES})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": harness.expected(INSTANCES)}

