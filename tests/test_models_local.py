"""The local model registry against a real MLflow tracking server (SQLite backend) on 127.0.0.1."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

import unijob.models as models
from unijob.cli.main import main
from unijob.errors import NotFound, UsageError

MLFLOW = Path(sys.executable).with_name("mlflow")

pytestmark = pytest.mark.skipif(not MLFLOW.exists(), reason="mlflow is not installed (pip install 'unijob[registry]')")


@pytest.fixture
def registry(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return mlflow_server


def _artifact(tmp_path, tag):
    d = tmp_path / f"model-{tag}"
    d.mkdir()
    (d / "tag.txt").write_text(tag)
    return d


def test_register_approve_alias_resolve(registry, tmp_path):
    name = f"digits-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    v1 = models.register(str(_artifact(tmp_path, "v1")), name, metadata={"accuracy": "0.91"})
    v2 = models.register(str(_artifact(tmp_path, "v2")), name, alias="champion", metadata={"accuracy": "0.98"})
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.status == models.PENDING and v2.aliases == ["champion"]
    assert v2.source.startswith("mlflow-artifacts:/") and v2.metadata["accuracy"] == "0.98"
    assert v2.metadata["registered_from"] == str((tmp_path / "model-v2").resolve())
    assert models.approve(name, "2").status == models.APPROVED
    assert models.reject(name, "1").status == models.REJECTED
    assert models.resolve(f"models:/{name}@champion").version == "2"
    assert models.resolve(f"models:/{name}/1").metadata["registered_from"].endswith("model-v1")
    # the registry keeps its own copy: retraining into the same directory changes no version
    (tmp_path / "model-v2" / "tag.txt").write_text("overwritten")
    # moving the alias takes it off the other version
    models.alias(name, "1", "champion")
    vs = models.versions(name)
    assert [(v.version, v.aliases, v.status) for v in vs] == [("1", ["champion"], models.REJECTED),
                                                               ("2", [], models.APPROVED)]
    listed = {m.name: m for m in models.list_models()}
    assert listed[name].latest_version == "2" and listed[name].aliases == {"champion": "1"}


def test_errors_are_clear(registry, tmp_path):
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        models.versions("nope")
    with pytest.raises(UsageError, match="not valid"):
        models.register(str(tmp_path), "bad name!")
    with pytest.raises(UsageError, match="reserved"):
        models.register(str(tmp_path), "ok", alias="latest")
    with pytest.raises(UsageError, match="does not exist"):
        models.register(str(tmp_path / "missing"), "ok")
    with pytest.raises(UsageError, match="models:/NAME/VERSION"):
        models.resolve("models:/x/y/z")
    name = f"err-{os.getpid()}"
    models.register(str(tmp_path), name)
    with pytest.raises(NotFound, match="no alias 'gold'"):
        models.resolve(f"models:/{name}@gold")
    with pytest.raises(NotFound):
        models.show(name, "7")


def test_endpoint_models_resolved_from_the_registry(registry, tmp_path):
    from unijob.spec import JobSpec

    name = f"ep-{os.getpid()}"
    models.register(str(_artifact(tmp_path, "a")), name, alias="champion")
    models.register(str(_artifact(tmp_path, "b")), name, alias="challenger")
    spec = JobSpec.model_validate({"name": "digits", "endpoint": {
        "handler": "serve.py:Digits", "variants": [
            {"name": "current", "weight": 90, "model": f"models:/{name}@champion"},
            {"name": "candidate", "weight": 10, "model": f"models:/{name}/2"}]}})
    (tmp_path / "model-a" / "tag.txt").write_text("retrained")
    out, used = models.resolve_endpoint_models(spec, "local")
    assert [(Path(v.model) / "tag.txt").read_text() for v in out.endpoint.variants] == ["a", "b"]
    assert spec.endpoint.variants[0].model.startswith("models:/"), "the caller's spec is not changed"
    assert set(used) == {f"models:/{name}@champion", f"models:/{name}/2"}
    bad = JobSpec.model_validate({"name": "digits", "endpoint": {"handler": "serve.py:Digits",
                                                                 "model": f"models:/{name}@gold"}})
    from unijob.errors import SpecError

    with pytest.raises(SpecError, match="endpoint.model"):
        models.resolve_endpoint_models(bad, "local")


def test_cli(registry, tmp_path, capsys):
    name = f"cli-{os.getpid()}"
    assert main(["models", "register", str(_artifact(tmp_path, "x")), "--name", name,
                 "--alias", "champion", "-m", "accuracy=0.97", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["aliases"] == ["champion"]
    assert main(["models", "approve", name, "1"]) == 0
    assert "Approved" in capsys.readouterr().out
    assert main(["models", "versions", name, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "Approved"
    assert main(["models", "register", str(tmp_path), "--name", name, "-m", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["models", "show", name, "9"]) == 5


def test_targets_without_a_registry_say_so():
    from unijob.contract import Adapter
    from unijob.models.types import ModelRegistry

    assert issubclass(Adapter, ModelRegistry)

    class NoReg(ModelRegistry):
        name = "noreg"
        unsupported = {"registry": "this platform keeps no model versions"}

    with pytest.raises(UsageError, match="noreg' has no model registry: this platform keeps no model versions"):
        NoReg().list_models()


@pytest.mark.slow
def test_local_server_started_on_first_use_and_stopped_by_pid(monkeypatch, tmp_path):
    from unijob.local import registry as local_registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    url = local_registry.ensure_server()
    try:
        st = local_registry.server_state()
        assert st and st["url"] == url
        assert local_registry.ensure_server() == url, "a running server is reused"
        v = models.register(str(_artifact(tmp_path, "auto")), "auto")
        assert v.version == "1"
    finally:
        assert local_registry.stop_server()
    assert local_registry.server_state() is None


def test_kubernetes_registry_is_the_teams_mlflow_server(mlflow_server, monkeypatch, tmp_path):
    pytest.importorskip("unijob_adapters.kubernetes")
    from unijob.spec import JobSpec

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UsageError, match="registry_uri"):
        models.list_models(target="kubernetes")
    spec = JobSpec.model_validate({"name": "d", "endpoint": {"handler": "s:D", "model": "s3://b/m"},
                                   "targets": {"kubernetes": {"registry_uri": mlflow_server}}})
    name = f"k8s-{os.getpid()}"
    v = models.register("s3://bucket/models/digits/3", name, target="kubernetes", spec=spec, alias="champion")
    assert (v.source, v.aliases, v.target) == ("s3://bucket/models/digits/3", ["champion"], "kubernetes")
    assert models.approve(name, v.version, target="kubernetes", spec=spec).status == models.APPROVED
