"""Unity Catalog models through the Databricks fake (MLflow's Unity Catalog registry REST API, every
request parsed into mlflow's own protobuf messages): the quickstart's model, trained for real on
this machine, registered from a Databricks job record and from a local path as versions 1 and 2 of
main.ml.digits, its files copied into each version (Files API /Models/...), approved and rejected
as a tag, aliased, and served: models:/main.ml.digits@champion becomes the serving endpoint's
entity_name/entity_version, and the fake's endpoint answers with the registered model.pkl."""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap
from pathlib import Path

import pytest

import unijob
import unijob.models as models
from unijob.cli.main import main
from unijob.errors import NotFound, SpecError, TargetError, UsageError

EXAMPLES = Path(__file__).parents[3] / "examples"
NAME = "main.ml.digits"
JOB = """
name: digits-train
script: src/train.py
output: /Volumes/main/ml/runs/digits
"""


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart trained on the local target (2 epochs): its output directory (model.pkl,
    metrics.json)."""
    pytest.importorskip("sklearn")
    root = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(EXAMPLES / "quickstart", root / "qs", ignore=shutil.ignore_patterns("output", "checkpoints",
                                                                                         "__pycache__"))
    from unijob.loading import load_spec

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIJOB_HOME", str(root / "home"))
        spec = load_spec(root / "qs" / "job.yaml").spec
        spec = spec.model_copy(update={"hyperparameters": {**spec.hyperparameters, "epochs": 2}})
        job = unijob.submit(spec, "local", wait=True)
        assert job.status().state is unijob.JobState.SUCCEEDED
        out = Path(job.model_artifact())
    assert {p.name for p in out.iterdir()} >= {"model.pkl", "metrics.json"}
    return out


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def _checked(fake):
    yield
    assert fake.errors == [], fake.errors
    stages = [r.path for r in fake.requests if "stage" in r.path or "latest-versions" in r.path]
    assert stages == [], "Unity Catalog has no stages"


def _databricks_job(fake, spec_factory, quickstart) -> unijob.Job:
    """A finished Databricks run whose output volume holds what the quickstart wrote (the fake's
    runs do not write volumes, so the files are put there as the run would have)."""
    job = unijob.submit(spec_factory(JOB), "databricks")
    fake.set_state(int(job.native_id), "TERMINATED", "SUCCESS")
    out = job.model_artifact()
    assert out == "/Volumes/main/ml/runs/digits"
    for p in quickstart.iterdir():
        fake.files[f"{out}/{p.name}"] = p.read_bytes()
    fake.files[f"{out}/extra/notes.txt"] = b"nested files are copied too"
    return job


def _uc(fake, method, suffix):
    return [r for r in fake.requests if r.method == method and r.path.endswith(suffix)]


def test_register_approve_alias_resolve(dbx_env, fake, spec_factory, quickstart, home):
    job = _databricks_job(fake, spec_factory, quickstart)
    v1 = models.register(f"job:{job.id}", NAME, target="databricks", metadata={"accuracy": "0.91"})
    assert (v1.version, v1.status, v1.source, v1.target) == ("1", "PendingManualApproval",
                                                             "/Volumes/main/ml/runs/digits", "databricks")
    assert v1.metadata == {"accuracy": "0.91", "job_id": job.id, "job_target": "databricks"}
    for name in ("model.pkl", "metrics.json"):
        assert fake.files[f"/Models/main/ml/digits/1/{name}"] == (quickstart / name).read_bytes()
    assert fake.files["/Models/main/ml/digits/1/extra/notes.txt"] == b"nested files are copied too"
    assert fake.uc_models[NAME]["versions"]["1"]["status"] == "READY"
    # create, then the files, then finalize (the order Unity Catalog needs)
    order = [r.path for r in fake.requests if "/unity-catalog/model-versions/" in r.path or "/fs/files/Models/" in r.path]
    assert order[0].endswith("model-versions/create") and order[-1].endswith("model-versions/finalize")
    assert all("/fs/files/Models/main/ml/digits/1/" in p for p in order[1:-1]) and len(order) == 5
    create = _uc(fake, "POST", "model-versions/create")[0].json()
    assert create["name"] == NAME and create["source"] == "/Volumes/main/ml/runs/digits"
    assert {"key": "unijob.approval", "value": "PendingManualApproval"} in create["tags"]

    # version 2 from a local path (the same trained model), with the alias
    v2 = models.register(str(quickstart), NAME, target="databricks", alias="champion")
    assert (v2.version, v2.aliases, v2.source) == ("2", ["champion"], str(quickstart.resolve()))
    assert v2.metadata["registered_from"] == str(quickstart.resolve())
    assert fake.files["/Models/main/ml/digits/2/model.pkl"] == (quickstart / "model.pkl").read_bytes()
    # a single volume file, spelled as a dbfs:/Volumes URI
    v3 = models.register("dbfs:/Volumes/main/ml/runs/digits/model.pkl", NAME, target="databricks")
    assert v3.source == "/Volumes/main/ml/runs/digits/model.pkl"
    assert sorted(k for k in fake.files if k.startswith("/Models/main/ml/digits/3/")) == ["/Models/main/ml/digits/3/model.pkl"]
    assert len(_uc(fake, "POST", "registered-models/create")) == 3  # the later ones answered "already exists"

    assert models.approve(NAME, "2", target="databricks").status == "Approved"
    assert models.reject(NAME, 1, target="databricks").status == "Rejected"
    tag = _uc(fake, "POST", "model-versions/set-tag")[0].json()
    assert tag == {"name": NAME, "version": "2", "key": "unijob.approval", "value": "Approved"}
    vs = models.versions(NAME, target="databricks")
    assert [(v.version, v.status, v.aliases) for v in vs] == [
        ("1", "Rejected", []), ("2", "Approved", ["champion"]), ("3", "PendingManualApproval", [])]
    # moving the alias: Unity Catalog takes it off version 2
    models.alias(NAME, "1", "champion", target="databricks")
    assert models.resolve(f"models:/{NAME}@champion", target="databricks").version == "1"
    assert [v.aliases for v in models.versions(NAME, target="databricks")] == [["champion"], [], []]
    models.alias(NAME, "2", "champion", target="databricks")
    champion = models.resolve(f"models:/{NAME}@champion", target="databricks")
    assert (champion.version, champion.status) == ("2", "Approved")
    assert models.show(NAME, "1", target="databricks").metadata["job_id"] == job.id
    listed = models.list_models(target="databricks")
    assert [(m.name, m.latest_version, m.aliases) for m in listed] == [(NAME, "3", {"champion": "2"})]


ENDPOINT = """
name: digits
endpoint:
  min_replicas: 0
  max_replicas: 1
  variants:
    - {{name: current, weight: 90, model: "{current}"}}
    - {{name: previous, weight: 10, model: "models:/main.ml.digits/1"}}
"""


def test_deploy_serves_the_versions_the_aliases_name(dbx_env, fake, spec_factory, quickstart, home, tmp_path,
                                                     capsys):
    """`unijob deploy -t databricks` resolves models:/...@champion on Unity Catalog into the served
    entity's entity_name/entity_version; the endpoint answers with the registered model.pkl."""
    job = _databricks_job(fake, spec_factory, quickstart)
    assert main(["models", "register", f"job:{job.id}", "-n", NAME, "-t", "databricks"]) == 0
    assert main(["models", "register", str(quickstart), "-n", NAME, "-a", "champion", "-t", "databricks"]) == 0
    capsys.readouterr()
    spec = tmp_path / "endpoint.yaml"
    spec.write_text(textwrap.dedent(ENDPOINT.format(current=f"models:/{NAME}@champion")))
    assert main(["deploy", str(spec), "-t", "databricks"]) == 0
    err = capsys.readouterr().err
    assert f"model models:/{NAME}@champion: version 2 (PendingManualApproval) of {NAME}" in err
    body = fake.calls("POST", r"/api/2\.0/serving-endpoints")[0].json()
    ents = body["config"]["served_entities"]
    assert [(e["name"], e["entity_name"], e["entity_version"]) for e in ents] == [
        ("current", NAME, "2"), ("previous", NAME, "1")]

    def registered(version):  # the model Model Serving would load: the version's own copy
        model = pickle.loads(fake.files[f"/Models/main/ml/digits/{version}/model.pkl"])
        return lambda rows: [int(p) for p in model.predict(rows)]

    fake.models[f"{NAME}/2"] = registered("2")
    fake.models[f"{NAME}/1"] = registered("1")
    request = json.loads((EXAMPLES / "quickstart" / "request.json").read_text())
    assert main(["invoke", "digits", "--data", json.dumps(request), "--variant", "current", "-t", "databricks"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = pickle.loads((quickstart / "model.pkl").read_bytes()).predict(request["instances"]).tolist()
    assert out["predictions"] == expected and len(expected) == len(request["instances"])


def test_bad_names_and_aliases_name_the_field(dbx_env, fake, spec_factory, quickstart, home, tmp_path, capsys):
    with pytest.raises(UsageError, match=r"'ml\.digits' is not a Unity Catalog model name: .*catalog\.schema\.model"):
        models.register(str(quickstart), "ml.digits", target="databricks")
    assert main(["models", "register", str(quickstart), "-n", "ml.digits", "-t", "databricks"]) == 2
    assert "catalog.schema.model" in capsys.readouterr().err
    assert fake.uc_models == {} and not _uc(fake, "POST", "model-versions/create")

    models.register(str(quickstart), NAME, target="databricks", alias="champion")
    spec = tmp_path / "endpoint.yaml"
    for current, says in [("models:/ml.digits@champion", "is not a Unity Catalog model name"),
                          (f"models:/{NAME}@Champion!", "alias 'Champion!' is not valid"),
                          (f"models:/{NAME}@gold", f"registered model '{NAME}' has no alias 'gold'")]:
        spec.write_text(textwrap.dedent(ENDPOINT.format(current=current)))
        with pytest.raises(SpecError) as e:
            unijob.plan(str(spec), "databricks", endpoint=True)
        assert e.value.issues[0].loc == ("endpoint", "variants", 0, "model") and says in str(e.value)
        assert main(["deploy", str(spec), "-t", "databricks"]) == 2
        err = capsys.readouterr().err
        assert f"{spec}:7:" in err and "endpoint.variants[0].model" in err and says in err
    assert fake.endpoints == {}
    with pytest.raises(NotFound, match=f"no version 9 of registered model '{NAME}'"):
        models.approve(NAME, "9", target="databricks")
    with pytest.raises(NotFound, match="no registered model 'main.ml.ghost'"):
        models.versions("main.ml.ghost", target="databricks")


def test_sources_unijob_cannot_copy_create_nothing(dbx_env, fake, quickstart, home, tmp_path):
    with pytest.raises(UsageError, match=r"cannot copy s3://b/model into a Unity Catalog model version.*/Volumes/"):
        models.register("s3://b/model", NAME, target="databricks")
    with pytest.raises(UsageError, match="does not exist in the workspace"):
        models.register("/Volumes/main/ml/runs/nothing", NAME, target="databricks")
    with pytest.raises(UsageError, match="does not exist"):
        models.register(str(tmp_path / "missing"), NAME, target="databricks")
    fake.uc_files_api = False
    with pytest.raises(TargetError, match="only through temporary cloud credentials"):
        models.register(str(quickstart), NAME, target="databricks")
    assert fake.uc_models == {}


def test_the_files_api_switch_is_read_as_mlflow_reads_it(dbx_env, fake, quickstart, home, monkeypatch):
    fake.uc_files_api = False
    monkeypatch.setenv("MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "true")
    assert models.register(str(quickstart), NAME, target="databricks").version == "1"
    assert not [r for r in fake.requests if "is-databricks-sdk-models-artifact-repository-enabled" in r.path]


def test_a_failed_copy_deletes_the_new_version(dbx_env, fake, quickstart, home):
    models.register(str(quickstart), NAME, target="databricks", alias="champion")
    fake.uc_refused_writes = 1
    with pytest.raises(TargetError, match="so the version was deleted again: .*WRITE FILES"):
        models.register(str(quickstart), NAME, target="databricks")
    assert list(fake.uc_models[NAME]["versions"]) == ["1"]
    assert not [k for k in fake.files if k.startswith("/Models/main/ml/digits/2/")]
    assert [v.version for v in models.versions(NAME, target="databricks")] == ["1"]


def test_a_missing_schema_is_the_workspaces_answer(dbx_env, fake, quickstart, home):
    with pytest.raises(NotFound, match="Schema 'main.nope' does not exist"):
        models.register(str(quickstart), "main.nope.digits", target="databricks")
    assert fake.uc_models == {}


def test_cli_walk(dbx_env, fake, quickstart, home, capsys):
    assert main(["models", "register", str(quickstart), "-n", NAME, "-m", "accuracy=0.9", "-t", "databricks",
                 "-o", "json"]) == 0
    v = json.loads(capsys.readouterr().out)
    assert (v["version"], v["status"], v["metadata"]["accuracy"], v["target"]) == ("1", "PendingManualApproval",
                                                                                   "0.9", "databricks")
    assert main(["models", "approve", NAME, "1", "-t", "databricks"]) == 0
    assert capsys.readouterr().out.strip() == f"models:/{NAME}/1 Approved"
    assert main(["models", "alias", NAME, "1", "champion", "-t", "databricks"]) == 0
    capsys.readouterr()
    assert main(["models", "versions", NAME, "-t", "databricks", "-o", "json"]) == 0
    assert [(v["version"], v["status"], v["aliases"]) for v in json.loads(capsys.readouterr().out)] == [
        ("1", "Approved", ["champion"])]
    assert main(["models", "list", "-t", "databricks", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": NAME, "latest_version": "1", "aliases": {"champion": "1"}, "target": "databricks"}]
    assert main(["models", "reject", NAME, "1", "-t", "databricks"]) == 0
    assert "Rejected" in capsys.readouterr().out
    assert main(["models", "show", NAME, "1", "-t", "databricks"]) == 0
    assert "accuracy: 0.9" in capsys.readouterr().out
    assert main(["models", "show", NAME, "7", "-t", "databricks"]) == 5
    assert main(["models", "alias", NAME, "1", "latest", "-t", "databricks"]) == 2


def test_the_adapter_has_a_registry_and_says_what_it_cannot_serve():
    from unijob_adapters.databricks.adapter import DatabricksAdapter
    from unijob_adapters.databricks.registry import UnityCatalogRegistry, files_path

    assert issubclass(DatabricksAdapter, UnityCatalogRegistry)
    assert "registry" not in DatabricksAdapter.unsupported
    assert "registered MLflow models (Unity Catalog)" in DatabricksAdapter.unsupported["endpoint.image / endpoint.handler"]
    assert files_path(NAME, "3") == "/Models/main/ml/digits/3"
    v = models.ModelVersion(name=NAME, version="3", source="/Volumes/x", registry_status="READY")
    assert DatabricksAdapter().model_location(v) == "models:/main.ml.digits/3"
    with pytest.raises(UsageError, match="version 3 of main.ml.digits is in no known state, not READY"):
        DatabricksAdapter().model_location(models.ModelVersion(name=NAME, version="3", source="/Volumes/x"))


def test_the_fake_parses_bodies_into_mlflows_messages(dbx_env):
    """The fake is a real check: a field CreateModelVersionRequest does not have fails the request."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    w = WorkspaceClient(host=dbx_env.url, token="x")
    w.api_client.do("POST", "/api/2.0/mlflow/unity-catalog/registered-models/create", body={"name": NAME})
    with pytest.raises(DatabricksError):
        w.api_client.do("POST", "/api/2.0/mlflow/unity-catalog/model-versions/create",
                        body={"name": NAME, "source": "/Volumes/main/ml/x", "stage": "Production"})
    with pytest.raises(DatabricksError):
        w.api_client.do("GET", "/api/2.0/mlflow/unity-catalog/model-versions/get", query={"name": NAME, "version": "1",
                                                                                           "stages": "None"})
    assert len(dbx_env.errors) == 2 and all("has no field named" in str(e) for e in dbx_env.errors), dbx_env.errors
    assert dbx_env.uc_models[NAME]["versions"] == {}
    dbx_env.errors.clear()


# ---- versions that are not READY ---------------------------------------------------------------------

UC_API = "/api/2.0/mlflow/unity-catalog"


def _registered_elsewhere(dbx_env, *, fail: str = "") -> str:
    """A version another client (mlflow's create, files, finalize) left PENDING_REGISTRATION (it never
    finalized) or, with ``fail``, FAILED_REGISTRATION (its finalize failed with that message); its number."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    w = WorkspaceClient(host=dbx_env.url, token="x")
    mv = w.api_client.do("POST", f"{UC_API}/model-versions/create",
                         body={"name": NAME, "source": "/Volumes/main/ml/runs/other"})["model_version"]
    if fail:
        w.api_client.do("PUT", f"/api/2.0/fs/files/Models/main/ml/digits/{mv['version']}/model.pkl", data=b"partial")
        dbx_env.uc_fail_finalize = fail
        with pytest.raises(DatabricksError, match="failed registration"):
            w.api_client.do("POST", f"{UC_API}/model-versions/finalize", body={"name": NAME, "version": mv["version"]})
    return str(mv["version"])


def test_a_version_that_is_not_ready_is_never_served(dbx_env, fake, quickstart, home, tmp_path, capsys,
                                                      monkeypatch):
    """models:/...@alias or /VERSION naming a PENDING_REGISTRATION or FAILED_REGISTRATION version stops
    plan and deploy at the variant's model field (exit 2), and no serving endpoint is created."""
    models.register(str(quickstart), NAME, target="databricks", alias="champion")  # 1: READY
    pending = _registered_elsewhere(dbx_env)
    failed = _registered_elsewhere(dbx_env, fail="copying the model files timed out")
    assert [fake.uc_models[NAME]["versions"][v]["status"] for v in ("1", pending, failed)] == [
        "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"]
    vs = models.versions(NAME, target="databricks")
    assert [(v.version, v.registry_status) for v in vs] == [
        ("1", "READY"), ("2", "PENDING_REGISTRATION"), ("3", "FAILED_REGISTRATION")]
    assert main(["models", "versions", NAME, "-t", "databricks", "-o", "json"]) == 0
    assert [v["registry_status"] for v in json.loads(capsys.readouterr().out)] == [
        "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"]
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["models", "versions", NAME, "-t", "databricks"]) == 0
    table = capsys.readouterr().out
    assert "PendingManualApproval (FAILED_REGISTRATION)" in table and "(READY)" not in table
    models.alias(NAME, pending, "champion", target="databricks")  # a pending version may be aliased
    spec = tmp_path / "endpoint.yaml"
    cases = [(f"models:/{NAME}@champion", "version 2 of main.ml.digits is PENDING_REGISTRATION, not READY: "
              "cannot serve or run it; its files are still being written", "wait for READY"),
             (f"models:/{NAME}/{failed}", "version 3 of main.ml.digits is FAILED_REGISTRATION, not READY: "
              "cannot serve or run it; its registration failed", "register the model again")]
    for current, says, hint in cases:
        spec.write_text(textwrap.dedent(ENDPOINT.format(current=current)))
        with pytest.raises(SpecError) as e:
            unijob.plan(str(spec), "databricks", endpoint=True)
        assert e.value.issues[0].loc == ("endpoint", "variants", 0, "model")
        assert e.value.issues[0].message.startswith(f"{current}: {says}") and hint in str(e.value)
        assert main(["deploy", str(spec), "-t", "databricks"]) == 2
        err = capsys.readouterr().err
        assert f"{spec}:7:" in err and "endpoint.variants[0].model" in err and says in err
    assert fake.endpoints == {} and not fake.calls("POST", r"/api/2\.0/serving-endpoints")
    # the READY version still deploys
    models.alias(NAME, "1", "champion", target="databricks")
    spec.write_text(textwrap.dedent(ENDPOINT.format(current=f"models:/{NAME}@champion")))
    assert main(["deploy", str(spec), "-t", "databricks"]) == 0
    ents = fake.calls("POST", r"/api/2\.0/serving-endpoints")[0].json()["config"]["served_entities"]
    assert [(e["entity_name"], e["entity_version"]) for e in ents] == [(NAME, "1"), (NAME, "1")]


def test_a_failed_registration_is_never_approved_or_aliased(dbx_env, fake, quickstart, home, capsys):
    models.register(str(quickstart), NAME, target="databricks", alias="champion")
    failed = _registered_elsewhere(dbx_env, fail="copying the model files timed out")
    sent = len(fake.requests)
    with pytest.raises(UsageError) as e:
        models.alias(NAME, failed, "champion", target="databricks")
    assert e.value.message.startswith("version 2 of main.ml.digits is FAILED_REGISTRATION (copying the model files "
                                      "timed out), not READY: cannot point alias 'champion' at it; its registration "
                                      "failed")
    with pytest.raises(UsageError, match="FAILED_REGISTRATION .*cannot approve it"):
        models.approve(NAME, failed, target="databricks")
    assert main(["models", "alias", NAME, failed, "champion", "-t", "databricks"]) == 2
    assert "FAILED_REGISTRATION" in capsys.readouterr().err
    assert main(["models", "approve", NAME, failed, "-t", "databricks"]) == 2
    assert "cannot approve it" in capsys.readouterr().err
    writes = [r.path for r in fake.requests[sent:] if r.method != "GET"]
    assert writes == [], "nothing is sent but reads"
    assert fake.uc_models[NAME]["aliases"] == {"champion": "1"}
    assert "unijob.approval" not in fake.uc_models[NAME]["versions"][failed]["tags"]
    assert models.reject(NAME, failed, target="databricks").status == "Rejected"  # rejecting it is fine


def test_our_own_failed_finalize_leaves_no_failed_version(dbx_env, fake, quickstart, home):
    fake.uc_fail_finalize = "the metastore refused the version"
    with pytest.raises(TargetError, match="so the version was deleted again: .*failed registration"):
        models.register(str(quickstart), NAME, target="databricks")
    assert fake.uc_models[NAME]["versions"] == {}
