"""The Vertex AI Model Registry through the REST fake: register two versions (models:upload, then
parentModel), approve/reject as a version label, move an alias with mergeVersionAliases, resolve
models:/NAME@ALIAS to the gs:// artifact, and the errors. Every request body the fake receives is
parsed with the aiplatform_v1 types (unknown fields refused)."""

from __future__ import annotations

import json

import pytest

import unijob.models as models
from unijob.errors import NotFound, UsageError
from unijob_adapters.vertex.registry import model_id

SERVING = "us-docker.pkg.dev/demo-project/unijob/serve:0.1"
V1, V2 = "gs://models/digits/v1/model/", "gs://models/digits/v2/model/"


@pytest.fixture
def spec(adapter, make_spec, block, monkeypatch):
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter)
    return make_spec(targets={"vertex": block(serving_image=SERVING)})


def _sent(fake, method, suffix):
    return [r for r in fake.requests if r.method == method and r.path.replace("%40", "@").endswith(suffix)]


def test_register_approve_alias_resolve(fake, spec):
    v1 = models.register(V1, "digits", target="vertex", spec=spec, metadata={"accuracy": "0.91"})
    v2 = models.register(V2, "digits", target="vertex", spec=spec)
    assert (v1.version, v1.status, v1.source, v1.metadata) == ("1", "PendingManualApproval", V1, {"accuracy": "0.91"})
    assert (v2.version, v2.status, v2.source) == ("2", "PendingManualApproval", V2)
    assert v1.native_id == "projects/demo-project/locations/us-central1/models/digits@1"
    uploads = [json.loads(r.body) for r in _sent(fake, "POST", "/models:upload")]
    assert uploads[0]["modelId"] == "digits" and "parentModel" not in uploads[0]
    assert uploads[1]["parentModel"] == "projects/demo-project/locations/us-central1/models/digits"
    assert "modelId" not in uploads[1]
    assert uploads[1]["model"]["containerSpec"]["imageUri"] == SERVING
    assert uploads[1]["model"]["labels"] == {"unijob_approval": "pending"}

    assert models.approve("digits", "2", target="vertex", spec=spec).status == "Approved"
    assert models.reject("digits", "1", target="vertex", spec=spec).status == "Rejected"
    patch = _sent(fake, "PATCH", "/models/digits@2")[-1]
    assert patch.arg("updateMask") == "labels" and json.loads(patch.body)["labels"] == {"unijob_approval": "approved"}

    models.alias("digits", "2", "champion", target="vertex", spec=spec)
    vs = models.versions("digits", target="vertex", spec=spec)
    assert [(v.version, v.status, v.aliases, v.source) for v in vs] == [
        ("1", "Rejected", [], V1), ("2", "Approved", ["champion"], V2)]
    # moving the alias: Vertex takes it off version 2 itself
    models.alias("digits", "1", "champion", target="vertex", spec=spec)
    assert models.resolve("models:/digits@champion", target="vertex", spec=spec).version == "1"
    assert [v.aliases for v in models.versions("digits", target="vertex", spec=spec)] == [["champion"], []]
    assert not [r for r in _sent(fake, "POST", ":mergeVersionAliases") if b"-champion" in r.body]

    models.alias("digits", "2", "champion", target="vertex", spec=spec)
    champion = models.resolve("models:/digits@champion", target="vertex", spec=spec)
    assert (champion.version, champion.source, champion.status) == ("2", V2, "Approved")
    assert models.resolve("models:/digits/1", target="vertex", spec=spec).source == V1
    listed = models.list_models(target="vertex", spec=spec)
    assert [(m.name, m.latest_version, m.aliases) for m in listed] == [("digits", "2", {"champion": "2"})]
    assert _sent(fake, "GET", "/models")[-1].arg("filter") == "labels.unijob_approval:*"
    assert fake.errors == []


def test_alias_still_on_the_old_version_is_removed(fake, spec):
    """Should mergeVersionAliases leave the alias on the other version, unijob sends ``-alias``."""
    fake.merge_moves_aliases = False
    models.register(V1, "digits", target="vertex", spec=spec, alias="champion")
    models.register(V2, "digits", target="vertex", spec=spec)
    models.alias("digits", "2", "champion", target="vertex", spec=spec)
    removes = [r for r in _sent(fake, "POST", "/models/digits@1:mergeVersionAliases")
               if json.loads(r.body) == {"versionAliases": ["-champion"]}]
    assert len(removes) == 1
    assert [v.aliases for v in models.versions("digits", target="vertex", spec=spec)] == [[], ["champion"]]


def test_registry_errors(fake, spec, make_spec, block):
    with pytest.raises(UsageError, match="Cloud Storage artifact"):
        models.register("s3://b/m.tar.gz", "digits", target="vertex", spec=spec)
    no_image = make_spec(targets={"vertex": block()})
    with pytest.raises(UsageError, match="serving_image"):
        models.register(V1, "digits", target="vertex", spec=no_image)
    assert _sent(fake, "POST", "/models:upload") == []
    with pytest.raises(NotFound, match="no registered model 'ghost'"):
        models.versions("ghost", target="vertex", spec=spec)
    models.register(V1, "digits", target="vertex", spec=spec)
    with pytest.raises(NotFound, match="no version 4 of registered model 'digits'"):
        models.approve("digits", "4", target="vertex", spec=spec)
    with pytest.raises(NotFound, match="no alias 'gold'"):
        models.resolve("models:/digits@gold", target="vertex", spec=spec)
    with pytest.raises(UsageError, match="Vertex version aliases"):
        models.alias("digits", "1", "gold_v2", target="vertex", spec=spec)
    # a name whose model id another registered model holds
    with pytest.raises(UsageError, match="already holds"):
        models.register(V2, "Digits", target="vertex", spec=spec)
    assert fake.errors == []


def test_model_id_follows_vertex_rules():
    assert model_id("digits") == "digits"
    assert model_id("Main.Fraud_v2") == "main-fraud_v2"
    assert model_id("3d-model") == "m-3d-model"
    assert len(model_id("a" * 63 + "b")) == 63


def test_an_endpoint_deploys_the_versions_its_variants_name(adapter, fake, spec, make_spec, block):
    """models:/digits@champion and models:/digits/1 become the versions' gs:// artifacts in the
    endpoint plan's models:upload bodies (resolved on the Vertex registry at deploy)."""
    models.register(V1, "digits", target="vertex", spec=spec)
    models.register(V2, "digits", target="vertex", spec=spec, alias="champion")
    models.approve("digits", "2", target="vertex", spec=spec)
    ep_spec = make_spec(targets={"vertex": block(serving_image=SERVING)}, endpoint={
        "handler": "serve:Digits", "min_replicas": 1, "max_replicas": 2,
        "autoscaling": {"metric": "cpu_utilization", "target": 60},
        "variants": [{"name": "current", "weight": 90, "model": "models:/digits@champion"},
                     {"name": "previous", "weight": 10, "model": "models:/digits/1"}]})
    resolved, used = models.resolve_endpoint_models(ep_spec, "vertex")
    plan = adapter.plan_endpoint(resolved)
    uris = [r.body["model"]["artifactUri"] for r in plan.requests if r.api.endswith("models:upload")]
    assert uris == [V2, V1]
    assert {u: (v.version, v.status) for u, v in used.items()} == {
        "models:/digits@champion": ("2", "Approved"), "models:/digits/1": ("1", "PendingManualApproval")}
