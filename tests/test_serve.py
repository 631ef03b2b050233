"""unijob.serve: handler loading, the app (in-process through Starlette's TestClient and as a real
uvicorn process), settings, model locations, the ``unijob serve`` command and import costs.

The platform contracts (SageMaker, Vertex, Kubernetes, the image) are in test_serve_contract.py;
both use the one handler in tests/serve_handler/predictor.py.
"""

from __future__ import annotations

import importlib.util
import io
import json
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

with warnings.catch_warnings():  # starlette >= 1.x prefers httpx2 for its TestClient; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient  # noqa: E402

from unijob.cli import main  # noqa: E402
from unijob.serve import BadRequest, Handler, HandlerError, create_app, load_handler  # noqa: E402
from unijob.serve.config import ServeConfig  # noqa: E402
from unijob.serve.model import materialize  # noqa: E402

_spec = importlib.util.spec_from_file_location("serve_harness", Path(__file__).parent / "serve_handler" / "harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

PREDICTOR_REF = f"{harness.PREDICTOR}:Predictor"
GOOD = [[1.0, 1.0], [2.0, 3.0]]


# ---- handler loading --------------------------------------------------------------------------

@pytest.fixture
def handlers(tmp_path, monkeypatch):
    """A directory to write handler modules into; sys.path and the modules imported are restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    root = tmp_path / "handlers"
    root.mkdir()

    def write(name: str, body: str) -> Path:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(body))
        return p

    write.root = root
    yield write
    for name in set(sys.modules) - before:
        if name.startswith(("hs_", "unijob_handler_")):
            del sys.modules[name]


def test_class_handler_is_instantiated_once_and_bound(handlers):
    handlers("hs_cls.py", """
        class Model:
            instances_made = 0
            def __init__(self):
                Model.instances_made += 1
            def load(self, model_dir):
                self.offset = len(str(model_dir))
            def predict(self, instances):
                return [x + self.offset for x in instances]
    """)
    h = load_handler("hs_cls:Model", handlers.root)
    assert (h.ref, h.wants_parameters, h.is_async) == ("hs_cls:Model", False, False)
    h.load(Path("abc"))
    assert h.predict([1, 2]) == [4, 5]
    assert sys.modules["hs_cls"].Model.instances_made == 1


def test_module_handler_with_parameters(handlers):
    handlers("hs_mod.py", """
        def predict(instances, parameters):
            return [x * parameters.get("k", 1) for x in instances]
    """)
    h = load_handler("hs_mod", handlers.root)
    assert h.load is None and h.wants_parameters
    assert h.predict([1, 2], {"k": 3}) == [3, 6]


@pytest.mark.parametrize("signature, wants", [("(self, instances)", False), ("(self, instances, parameters)", True),
                                              ("(self, instances, parameters=None)", True), ("(self, *args)", True)])
def test_predict_gets_parameters_only_when_it_takes_them(handlers, signature, wants):
    name = f"hs_sig{abs(hash(signature))}"
    handlers(f"{name}.py", f"class P:\n    def predict{signature}:\n        return []\n")
    assert load_handler(f"{name}:P", handlers.root).wants_parameters is wants


def test_path_form_imports_the_file_and_its_neighbours(handlers):
    handlers("pkgless/hs_helper.py", "FACTOR = 10\n")
    handlers("pkgless/serve.py", """
        import hs_helper
        class Predictor:
            def predict(self, instances):
                return [x * hs_helper.FACTOR for x in instances]
    """)
    h = load_handler("pkgless/serve.py:Predictor", handlers.root)
    assert h.predict([1, 2]) == [10, 20]


def test_async_predict_is_detected(handlers):
    handlers("hs_async.py", """
        class P:
            async def predict(self, instances):
                return instances
    """)
    assert load_handler("hs_async:P", handlers.root).is_async


def test_missing_attribute_suggests_the_close_name(handlers):
    handlers("hs_typo.py", "class Predictor:\n    def predict(self, instances):\n        return instances\n")
    with pytest.raises(HandlerError, match=r"has no attribute 'Predictr'; did you mean 'Predictor'\?"):
        load_handler("hs_typo:Predictr", handlers.root)


def test_no_predict_is_a_handler_error(handlers):
    handlers("hs_nopredict.py", "class P:\n    def load(self, model_dir):\n        pass\n    def infer(self, x):\n        return x\n")
    with pytest.raises(HandlerError, match="found no predict"):
        load_handler("hs_nopredict:P", handlers.root)


@pytest.mark.parametrize("ref, message", [
    ("hs_nosuchmodule:P", r"no module named 'hs_nosuchmodule'"),
    ("missing/dir/serve.py:P", r"no file"),
    (":P", r"expected module:attr"),
])
def test_bad_references_are_handler_errors(handlers, ref, message):
    with pytest.raises(HandlerError, match=message):
        load_handler(ref, handlers.root)


def test_a_missing_package_inside_the_handler_is_not_blamed_on_the_reference(handlers):
    # The handler module exists; what it imports does not. Its name is a prefix of the handler's
    # name, which the old check (startswith) mistook for the handler itself being missing.
    handlers("hs_models_v2.py", "import hs_models\nclass P:\n    def predict(self, i):\n        return i\n")
    with pytest.raises(ModuleNotFoundError) as err:
        load_handler("hs_models_v2:P", handlers.root)
    assert err.type is ModuleNotFoundError and err.value.name == "hs_models"


def test_a_class_needing_arguments_is_a_handler_error(handlers):
    handlers("hs_args.py", "class P:\n    def __init__(self, path):\n        pass\n    def predict(self, i):\n        return i\n")
    with pytest.raises(HandlerError, match="constructible without arguments"):
        load_handler("hs_args:P", handlers.root)


# ---- the app in-process (Starlette's TestClient, httpx underneath) ------------------------------

@pytest.fixture
def model_dir(tmp_path):
    return harness.write_model(tmp_path / "model")


@pytest.fixture
def app_client(model_dir):
    """A TestClient on the shared predictor, lifespan started (the model is loaded)."""
    app = create_app(load_handler(PREDICTOR_REF), model_dir=model_dir, health_routes=("/v1/health",),
                     predict_routes=("/v1/endpoints/1/deployedModels/2:predict",), max_payload=4096)
    with TestClient(app) as client:
        _wait(client, "/ping", 200)
        yield client


def _wait(client, path, status, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(path)
        if r.status_code == status:
            return r
        time.sleep(0.02)
    raise AssertionError(f"{path} never answered {status}: {r.status_code} {r.text}")


def _handler(predict, load=None, *, wants_parameters=False, is_async=False) -> Handler:
    return Handler(ref="test:Handler", load=load, predict=predict, wants_parameters=wants_parameters, is_async=is_async)


def test_every_route_answers(app_client):
    for path in ("/ping", "/ready", "/v1/health"):
        assert app_client.get(path).json() == {"status": "ok"}
    assert app_client.get("/live").json() == {"status": "alive", "ready": True}
    for path in ("/predict", "/invocations", "/v1/endpoints/1/deployedModels/2:predict"):
        r = app_client.post(path, json={"instances": GOOD, "parameters": {"scale": 2}})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"predictions": harness.expected(GOOD, 2)}
    # SageMaker's /invocations also takes a bare array and answers one
    assert app_client.post("/invocations", json=GOOD).json() == harness.expected(GOOD)


@pytest.mark.parametrize("path, body, message", [
    ("/predict", b"{not json", "not JSON"),
    ("/predict", b"", "empty body"),
    ("/predict", b"\xff\xfe\xfa", "not"),
    ("/predict", b'"text"', "got str"),
    ("/predict", b"[[1, 2]]", "got an array"),  # bare arrays are for /invocations only
    ("/predict", b'{"instance": [[1, 2]]}', 'did you mean "instances" instead of "instance"'),
    ("/predict", b'{"instances": {"a": 1}}', '"instances" must be a JSON array'),
    ("/predict", b'{"instances": [[1, 2]], "parameters": [1]}', '"parameters" must be a JSON object'),
    ("/predict", b'{"instances": [[1, 2]], "parameters": []}', '"parameters" must be a JSON object'),
    ("/predict", b'{"instances": [[1, 2]], "extra": 1}', "unexpected key(s) extra"),
    ("/invocations", b'{"instances": [[1, 2, 3]]}', "list of 2 numbers"),  # the handler's BadRequest
])
def test_bad_requests_get_400_and_the_server_keeps_serving(app_client, path, body, message):
    r = app_client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert app_client.post(path, json={"instances": GOOD}).json() == {"predictions": harness.expected(GOOD)}


def test_vertex_labels_are_accepted(app_client):
    r = app_client.post("/predict", json={"instances": GOOD, "labels": {"team": "search"}})
    assert r.json() == {"predictions": harness.expected(GOOD)}


def test_wrong_content_type_is_415(app_client):
    r = app_client.post("/invocations", content=b"1,1\n2,3\n", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["error"]


def test_jsonlines_one_instance_per_line(app_client):
    r = app_client.post("/invocations", content=b"[1, 1]\n\n[2, 3]\n", headers={"content-type": "application/jsonlines"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line) for line in r.text.splitlines()] == harness.expected(GOOD)
    bad = app_client.post("/invocations", content=b"[1, 1]\n[2,\n", headers={"content-type": "application/jsonlines"})
    assert bad.status_code == 400 and "line 2" in bad.json()["error"]


def test_payload_over_the_limit_is_413_with_or_without_content_length(app_client):
    big = json.dumps({"instances": [[1.0, 2.0]] * 400}).encode()
    assert len(big) > 4096
    r = app_client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "4096" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    r = app_client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    ok = json.dumps({"instances": GOOD}).encode()
    assert app_client.post("/predict", content=iter([ok[:5], ok[5:]]),
                           headers={"content-type": "application/json"}).status_code == 200


def test_handler_exception_is_500_logged_with_traceback_and_serving_goes_on(app_client, caplog):
    r = app_client.post("/predict", json={"instances": GOOD, "parameters": {"fail": True}})
    assert r.status_code == 500 and r.json()["error"] == "the handler raised RuntimeError: asked to fail"
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rec.name == "unijob.serve")
    assert "Traceback (most recent call last)" in logged and 'raise RuntimeError("asked to fail")' in logged
    assert app_client.post("/predict", json={"instances": GOOD}).status_code == 200


def test_wrong_number_of_predictions_is_500(app_client):
    r = app_client.post("/predict", json={"instances": GOOD, "parameters": {"drop": 1}})
    assert r.status_code == 500 and r.json()["error"] == "the handler returned 1 predictions for 2 instances"


@pytest.mark.parametrize("result, status, expected", [
    (np.array([[1, 2], [3, 4]], dtype=np.int64), 200, [[1, 2], [3, 4]]),
    ([np.float32(0.5), np.array([1.5, 2.5], dtype=np.float32)], 200, [0.5, [1.5, 2.5]]),
    ((np.int32(7), {"label": np.str_("cat"), "p": np.float64(0.25)}), 200, [7, {"label": "cat", "p": 0.25}]),
    ({"not": "a list"}, 500, "predict must return one prediction per instance"),
    ([float("nan"), 1.0], 500, "NaN or infinity"),
    ([object(), 1], 500, "object is not JSON serializable"),
])
def test_predictions_are_serialized_or_rejected(result, status, expected):
    with TestClient(create_app(_handler(lambda instances: result))) as client:
        r = client.post("/predict", json={"instances": [0, 0]})
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json() == {"predictions": expected}
    else:
        assert expected in r.json()["error"]


def test_ping_is_503_while_load_runs_then_200():
    release = threading.Event()
    loaded = []

    def load(model_dir):
        assert release.wait(60), "the test never released load()"
        loaded.append(model_dir)

    app = create_app(_handler(lambda instances: instances, load), model_dir=Path("/models/m"))
    with TestClient(app) as client:
        try:
            for path in ("/ping", "/ready"):
                r = client.get(path)
                assert r.status_code == 503 and r.json() == {"error": "loading the model"}
            assert client.get("/live").json() == {"status": "alive", "ready": False}
            assert client.post("/predict", json={"instances": [1]}).status_code == 503
        finally:
            release.set()
        _wait(client, "/ping", 200)
        assert loaded == [Path("/models/m")]
        assert client.post("/predict", json={"instances": [1]}).json() == {"predictions": [1]}


def test_load_failure_is_500_on_health_and_reported(caplog):
    failures = []

    def load(model_dir):
        raise OSError("weights missing")

    app = create_app(_handler(lambda i: i, load), on_load_failed=failures.append)
    with TestClient(app) as client:
        r = _wait(client, "/ping", 500)
        assert r.json() == {"error": "model failed to load: OSError: weights missing"}
        assert client.post("/predict", json={"instances": [1]}).status_code == 500
    assert [type(e) for e in failures] == [OSError]
    assert any("Traceback" in rec.getMessage() and "weights missing" in rec.getMessage() for rec in caplog.records)


def test_async_load_and_async_predict_are_awaited():
    class AsyncModel:
        async def load(self, model_dir):
            self.scale = 3

        async def predict(self, instances, parameters):
            return [x * self.scale + parameters.get("add", 0) for x in instances]

    m = AsyncModel()
    h = _handler(m.predict, m.load, wants_parameters=True, is_async=True)
    with TestClient(create_app(h)) as client:
        _wait(client, "/ping", 200)
        r = client.post("/predict", json={"instances": [1, 2], "parameters": {"add": 1}})
    assert r.json() == {"predictions": [4, 7]}


def test_bad_request_raised_by_the_handler_is_400():
    def predict(instances):
        raise BadRequest("instance 0 has no 'text'")

    with TestClient(create_app(_handler(predict))) as client:
        r = client.post("/predict", json={"instances": [{}]})
    assert r.status_code == 400 and r.json() == {"error": "instance 0 has no 'text'"}


# ---- settings and model locations ---------------------------------------------------------------

@pytest.mark.parametrize("env, port", [
    ({}, 8080),
    ({"PORT": "9001"}, 9001),
    ({"PORT": "9001", "SAGEMAKER_BIND_TO_PORT": "9002"}, 9002),
    ({"PORT": "9001", "SAGEMAKER_BIND_TO_PORT": "9002", "AIP_HTTP_PORT": "9003"}, 9003),
])
def test_port_resolution(env, port):
    config = ServeConfig.from_env({"UNIJOB_HANDLER": "serve:P", **env})
    assert config.port == port and config.host == "0.0.0.0" and config.handler == "serve:P"
    assert ServeConfig.from_env({"UNIJOB_HANDLER": "serve:P", **env}, port=7000).port == 7000


@pytest.mark.parametrize("env, message", [
    ({}, "no handler"),
    ({"UNIJOB_HANDLER": "s:P", "PORT": "http"}, "PORT='http' is not a port number"),
    ({"UNIJOB_HANDLER": "s:P", "AIP_HEALTH_ROUTE": "health"}, "must start with /"),
    ({"UNIJOB_HANDLER": "s:P", "UNIJOB_MAX_PAYLOAD_BYTES": "6MB"}, "UNIJOB_MAX_PAYLOAD_BYTES='6MB' is not a whole number"),
    ({"UNIJOB_HANDLER": "s:P", "UNIJOB_SERVE_WORKERS": "0"}, "UNIJOB_SERVE_WORKERS='0' must be at least 1"),
])
def test_bad_settings_are_value_errors(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ServeConfig.from_env(env)


def test_vertex_routes_and_model_come_from_aip_variables():
    config = ServeConfig.from_env({"UNIJOB_HANDLER": "s:P", "AIP_HEALTH_ROUTE": "/h", "AIP_PREDICT_ROUTE": "/p",
                                   "AIP_STORAGE_URI": "gs://b/m", "UNIJOB_MAX_PAYLOAD_BYTES": "10"})
    assert (config.health_routes, config.predict_routes, config.model, config.max_payload) == (["/h"], ["/p"], "gs://b/m", 10)


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_materialize_directories_file_uris_and_archives(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_MODEL_CACHE", str(tmp_path / "cache"))
    d = harness.write_model(tmp_path / "m")
    assert materialize(str(d)) == d and materialize(f"file://{d}") == d and materialize(None) is None
    archive = _tarball(tmp_path / "model.tar.gz", {"model.json": b"{}", "sub/vocab.txt": b"a\nb\n"})
    out = materialize(str(archive))
    assert (out / "model.json").read_bytes() == b"{}" and (out / "sub" / "vocab.txt").read_text() == "a\nb\n"
    assert materialize(str(archive)) == out  # extracted once, then reused
    with pytest.raises(FileNotFoundError, match="does not exist"):
        materialize(str(tmp_path / "nope"))


@pytest.mark.parametrize("files, message", [(None, "not a tar archive"), ({"../escape.txt": b"x"}, "outside the destination")])
def test_a_bad_archive_is_a_value_error_and_leaves_nothing(tmp_path, monkeypatch, files, message):
    monkeypatch.setenv("UNIJOB_MODEL_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "model.tar.gz"
    if files is None:
        archive.write_bytes(b"this is not a tarball")
    else:
        _tarball(archive, files)
    with pytest.raises(ValueError, match=message):
        materialize(str(archive))
    assert not (tmp_path / "escape.txt").exists()
    assert list((tmp_path / "cache" / "unijob-models").iterdir()) == []


def test_materialize_copies_a_remote_uri(tmp_path, monkeypatch):
    fsspec = pytest.importorskip("fsspec")
    monkeypatch.setenv("UNIJOB_MODEL_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    fs.pipe({"/serve-test/model/model.json": b'{"w": 1}', "/serve-test/model/extra/a.txt": b"a"})
    fs.pipe("/serve-test/model.tar.gz", _tarball(tmp_path / "m.tar.gz", {"model.json": b"{}"}).read_bytes())
    try:
        d = materialize("memory://serve-test/model")
        assert (d / "model.json").read_bytes() == b'{"w": 1}' and (d / "extra" / "a.txt").read_bytes() == b"a"
        assert (materialize("memory://serve-test/model.tar.gz") / "model.json").read_bytes() == b"{}"
    finally:
        fs.rm("/serve-test", recursive=True)


# ---- the app as a real uvicorn process ----------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One ``python -m unijob.serve`` process on the shared predictor, a 2048-byte payload limit."""
    tmp = tmp_path_factory.mktemp("live")
    servers = harness.Servers(tmp)
    port = harness.free_port()
    env = harness.clean_env(tmp, UNIJOB_HANDLER=PREDICTOR_REF, UNIJOB_MODEL_DIR=str(harness.write_model(tmp / "model")),
                            PORT=str(port), UNIJOB_MAX_PAYLOAD_BYTES="2048")
    try:
        server = servers.serve("--host", "127.0.0.1", env=env, port=port)
        server.wait_for("/ping")
        yield server
    finally:
        servers.close()


def _good(server, path="/predict"):
    r = server.post(path, json={"instances": GOOD})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": harness.expected(GOOD)}  # the handler's NumPy array, as JSON


def test_process_400_then_keeps_serving(live):
    for body in (b"{oops", b'{"instance": []}', b"[1, 2]"):
        r = live.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]
        _good(live)


def test_process_415_and_413(live):
    r = live.post("/invocations", content=b"1,2", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    big = json.dumps({"instances": [[1.0, 2.0]] * 300}).encode()
    assert len(big) > 2048
    r = live.post("/invocations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "2048" in r.json()["error"]
    _good(live, "/invocations")


def test_process_500_with_the_traceback_in_the_log_and_still_serving(live):
    r = live.post("/predict", json={"instances": GOOD, "parameters": {"fail": True}})
    assert r.status_code == 500 and "asked to fail" in r.json()["error"]
    _good(live)
    log = live.log()
    assert "predict failed on /predict" in log and "Traceback (most recent call last)" in log
    assert "RuntimeError: asked to fail" in log
    r = live.post("/predict", json={"instances": GOOD, "parameters": {"drop": 1}})
    assert r.status_code == 500 and "1 predictions for 2 instances" in r.json()["error"]
    _good(live)


def test_process_ping_is_503_until_the_gated_load_finishes(tmp_path):
    servers = harness.Servers(tmp_path)
    gate = tmp_path / "release-load"
    port = harness.free_port()
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER=PREDICTOR_REF, UNIJOB_MODEL_DIR=str(harness.write_model(tmp_path / "m")),
                            PORT=str(port), UNIJOB_TEST_LOAD_GATE=str(gate))
    try:
        server = servers.serve("--host", "127.0.0.1", env=env, port=port)
        r = server.wait_for("/ping", 503)
        assert r.json() == {"error": "loading the model"}
        assert server.get("/live").json() == {"status": "alive", "ready": False}
        assert server.post("/invocations", json=GOOD).status_code == 503
        gate.touch()
        server.wait_for("/ping", 200)
        assert server.post("/invocations", json=GOOD).json() == harness.expected(GOOD)
    finally:
        gate.touch()
        servers.close()


def test_process_load_failure_exits_1_with_the_traceback(tmp_path):
    servers = harness.Servers(tmp_path)
    port = harness.free_port()
    empty = tmp_path / "empty-model"
    empty.mkdir()
    env = harness.clean_env(tmp_path, UNIJOB_HANDLER=PREDICTOR_REF, UNIJOB_MODEL_DIR=str(empty), PORT=str(port))
    try:
        server = servers.serve("--host", "127.0.0.1", env=env, port=port)
        assert server.wait_exit() == 1
        log = server.log()
        assert f"load({empty}) failed" in log and "Traceback (most recent call last)" in log
        assert "FileNotFoundError" in log and "model.json" in log
    finally:
        servers.close()


def test_process_bad_handler_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "unijob.serve", "--handler", f"{harness.PREDICTOR}:Predictr"],
                       env=harness.clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"unijob.serve: error: handler '{harness.PREDICTOR}:Predictr': '{harness.PREDICTOR}' has no attribute "
        "'Predictr'; did you mean 'Predictor'?"]


# ---- unijob serve -------------------------------------------------------------------------------

def test_cli_serve_bad_handler_is_exit_2_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in harness.PLATFORM_VARS:
        monkeypatch.delenv(var, raising=False)
    assert main(["serve", "--handler", f"{harness.PREDICTOR}:Predictr", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'Predictor'?" in err and "Traceback" not in err
    assert main(["serve"]) == 2
    assert "no handler: pass --handler" in capsys.readouterr().err


@pytest.mark.parametrize("setup, message", [
    (lambda d: str(d / "nowhere"), "model: model location"),
    (lambda d: (d / "broken.tar.gz").write_bytes(b"nope") and str(d / "broken.tar.gz"), "not a tar archive"),
])
def test_cli_serve_bad_model_is_exit_2_one_message(tmp_path, capsys, monkeypatch, setup, message):
    monkeypatch.setenv("UNIJOB_MODEL_CACHE", str(tmp_path / "cache"))
    for var in harness.PLATFORM_VARS:
        monkeypatch.delenv(var, raising=False)
    assert main(["serve", "--handler", PREDICTOR_REF, "--model-dir", setup(tmp_path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model: ") and message in err and "Traceback" not in err


def test_cli_serve_bad_setting_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIJOB_MAX_PAYLOAD_BYTES", "lots")
    assert main(["serve", "--handler", PREDICTOR_REF]) == 2
    assert "UNIJOB_MAX_PAYLOAD_BYTES='lots' is not a whole number" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from unijob.cli import main; main()", *args]


def test_cli_serve_listens_on_127_0_0_1_and_stops_on_sigterm(tmp_path):
    servers = harness.Servers(tmp_path)
    port = harness.free_port()
    model = harness.write_model(tmp_path / "m")
    try:
        server = servers.start(_cli("serve", "--handler", PREDICTOR_REF, "--model-dir", str(model), "--port", str(port)),
                               env=harness.clean_env(tmp_path), port=port)
        server.wait_for("/ping")
        _good(server)
        assert f"Uvicorn running on http://127.0.0.1:{port}" in server.log()
        server.stop()
        # A graceful shutdown. uvicorn (>= 0.29) re-raises the SIGTERM it caught once it has
        # drained, so the process ends by that signal rather than with exit code 0.
        assert server.proc.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log() and "Finished server process" in server.log()
    finally:
        servers.close()


def test_cli_serve_propagates_exit_1_when_load_fails(tmp_path):
    servers = harness.Servers(tmp_path)
    port = harness.free_port()
    (tmp_path / "empty").mkdir()
    try:
        server = servers.start(_cli("serve", "--handler", PREDICTOR_REF, "--model-dir", str(tmp_path / "empty"),
                                    "--port", str(port)), env=harness.clean_env(tmp_path), port=port)
        assert server.wait_exit() == 1
        assert "load(" in server.log() and "FileNotFoundError" in server.log()
    finally:
        servers.close()


# ---- nothing heavy at import --------------------------------------------------------------------

SERVER_MODULES = {"starlette", "uvicorn", "fastapi", "anyio", "h11"}
PROBE = """
import sys
base = set(sys.modules)
{body}
print("MODULES", " ".join(sorted({{m.split('.')[0] for m in set(sys.modules) - base}})), file=sys.stderr)
"""


@pytest.mark.parametrize("body", [
    "import unijob.serve\nfrom unijob.serve import load_handler, BadRequest, Handler, HandlerError",
    "import unijob.serve.image as image\nimage.dockerfile('serve:P')",
    "from unijob.cli import main\nmain(['--help'])",
    "from unijob.cli import main\nmain(['serve', '--help'])",
    "from unijob.cli import main\nmain(['serve-image', 'serve:P', '-o', '-'])",
])
def test_serving_code_is_not_imported_until_a_server_starts(body, tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.rsplit("MODULES", 1)[1].split())
    assert "unijob" in loaded  # the probe measured something
    assert not loaded & SERVER_MODULES, f"{body!r} imported {loaded & SERVER_MODULES}"


def test_a_fast_predict_runs_on_the_event_loop_after_warm_up_and_a_slow_one_in_threads(monkeypatch):
    import unijob.serve.app as serve_app
    from unijob.serve.app import InlinePolicy

    def ident(instances):
        return [threading.get_ident()] * len(instances)

    def timed(fn, args):  # the durations the policy sees, fixed (no timing in the test)
        return fn(*args), 1.0 if args[0][0] == "slow" else 1e-6

    monkeypatch.setattr(serve_app, "_timed", timed)

    async def loop_thread(request):
        from starlette.responses import JSONResponse

        return JSONResponse(threading.get_ident())

    app = create_app(_handler(ident))
    app.add_route("/_loop_thread", loop_thread)
    with TestClient(app) as client:
        loop = client.get("/_loop_thread").json()
        fast = [client.post("/predict", json={"instances": [1]}).json()["predictions"][0] for _ in range(12)]
        assert all(t != loop for t in fast[:InlinePolicy.WARMUP]), "unmeasured calls go to a worker thread"
        assert all(t == loop for t in fast[InlinePolicy.WARMUP:]), "measured fast calls run inline"
        big = client.post("/predict", json={"instances": [1] * 100_000}).json()["predictions"][0]
        assert big != loop, "an estimate over the budget (many instances) goes to a thread"
        client.post("/predict", json={"instances": ["slow"]})
        after = client.post("/predict", json={"instances": [1]}).json()["predictions"][0]
        assert after != loop, "one slow call sends the next ones to threads"


def test_inline_policy_estimates_per_instance():
    from unijob.serve.app import InlinePolicy

    p = InlinePolicy()
    for _ in range(InlinePolicy.WARMUP - 1):
        p.record(10, 0.0001)
    assert not p.allows(1)
    p.record(10, 0.0001)  # 10 us per instance
    assert p.allows(1) and p.allows(150) and not p.allows(250)
