"""submit / status / logs / cancel, uploads, retries and endpoints against the local fake."""

from __future__ import annotations

import pytest

from unijob.contract import JobState
from unijob.errors import SpecError

SCRIPT_JOB = """
name: life
script: src/train.py
requirements: src/requirements.txt
resources: {accelerator: A10G, nodes: 2}
spot: {policy: spot}
hyperparameters: {lr: 0.01}
targets:
  databricks: {upload_dir: UPLOAD_DIR}
"""
FILES = {"src/train.py": "import helper\nprint('loss 0.1')\n", "src/helper.py": "X = 1\n",
         "src/requirements.txt": "numpy>=1.24\n"}


def _spec(spec_factory, upload_dir="/Workspace/Shared/unijob"):
    return spec_factory(SCRIPT_JOB.replace("UPLOAD_DIR", upload_dir), FILES)


@pytest.fixture(autouse=True)
def _no_bad_bodies(fake):
    yield
    assert fake.errors == [], fake.errors


def test_submit_sends_the_plan_and_uploads_first(dbx_adapter, fake, spec_factory):
    plan = dbx_adapter.plan(_spec(spec_factory), "s-1")
    h = dbx_adapter.submit(plan)
    run = fake.runs[int(h.native_id)]
    assert run["submitted"] == plan.requests[0].body  # exactly the plan's body went over the wire
    dest = plan.uploads[0].destination
    for rel in ("train.py", "helper.py", "requirements.txt", "_unijob_launcher.py"):
        assert f"{dest}/{rel}" in fake.files
    assert fake.files[f"{dest}/train.py"].startswith(b"import helper")
    # uploads precede the run
    first_submit = next(i for i, r in enumerate(fake.requests) if r.path.endswith("/runs/submit"))
    assert all(not r.path.endswith("/workspace/import") for r in fake.requests[first_submit:])


def test_upload_to_a_unity_catalog_volume(dbx_adapter, fake, spec_factory):
    plan = dbx_adapter.plan(_spec(spec_factory, "/Volumes/main/ml/code/unijob"), "s-vol")
    assert plan.uploads[0].destination.startswith("/Volumes/main/ml/code/unijob/life/")
    h = dbx_adapter.submit(plan)
    task = fake.runs[int(h.native_id)]["submitted"]["tasks"][0]
    assert task["spark_python_task"]["python_file"] in fake.files
    assert fake.calls("PUT", r"/api/2\.0/fs/files/Volumes/.*")
    assert not fake.calls("POST", r"/api/2\.0/workspace/import")


def test_states_follow_the_run(dbx_adapter, fake, spec_factory):
    h = dbx_adapter.submit(dbx_adapter.plan(_spec(spec_factory), "s-2"))
    rid = int(h.native_id)
    assert dbx_adapter.status(h).state == JobState.QUEUED
    fake.set_state(rid, "RUNNING")
    assert dbx_adapter.status(h).state == JobState.RUNNING
    fake.set_state(rid, "TERMINATING")
    assert dbx_adapter.status(h).state == JobState.STOPPING
    fake.set_state(rid, "TERMINATED", "SUCCESS")
    st = dbx_adapter.status(h)
    assert (st.state, st.native_state) == (JobState.SUCCEEDED, "TERMINATED/SUCCESS")
    assert st.ended_at and st.started_at and st.ended_at > st.started_at
    fake.set_state(rid, "TERMINATED", "FAILED", "exit 1")
    assert dbx_adapter.status(h).state == JobState.FAILED
    fake.set_state(rid, "INTERNAL_ERROR", None, "cluster lost")
    assert dbx_adapter.status(h).state == JobState.FAILED
    fake.set_state(rid, "SKIPPED")
    assert dbx_adapter.status(h).state == JobState.FAILED


def test_logs_read_the_task_run_output(dbx_adapter, fake, spec_factory):
    h = dbx_adapter.submit(dbx_adapter.plan(_spec(spec_factory), "s-3"))
    rid = int(h.native_id)
    task_id = fake.runs[rid]["tasks"][0]["run_id"]
    fake.outputs[task_id] = "epoch 1 loss 0.5\nepoch 2 loss 0.2"
    fake.set_state(rid, "TERMINATED", "FAILED", "Task failed")
    lines = list(dbx_adapter.logs(h, follow=True))
    assert "[databricks] TERMINATED/FAILED: Task failed" in lines
    assert "[driver] epoch 2 loss 0.2" in lines
    assert any(line.startswith("[databricks] error:") for line in lines)
    # get-output was asked for the task run, never the parent (Databricks refuses that)
    asked = {r.arg("run_id") for r in fake.calls("GET", r"/api/2\.2/jobs/runs/get-output")}
    assert asked == {str(task_id)}


def test_cancel_moves_to_cancelled_and_is_idempotent(dbx_adapter, fake, spec_factory):
    h = dbx_adapter.submit(dbx_adapter.plan(_spec(spec_factory), "s-4"))
    fake.set_state(int(h.native_id), "RUNNING")
    dbx_adapter.cancel(h)
    assert dbx_adapter.status(h).state == JobState.CANCELLED
    dbx_adapter.cancel(h)
    assert len(fake.calls("POST", r"/api/2\.2/jobs/runs/cancel")) == 2


@pytest.mark.parametrize("status,headers", [(429, {"Retry-After": "1"}), (503, {})])
def test_transient_failures_on_submit_create_exactly_one_run(dbx_adapter, fake, spec_factory, status, headers):
    plan = dbx_adapter.plan(_spec(spec_factory), "s-retry")
    fake.fail_next(status, 1, path=r"/api/2\.2/jobs/runs/submit", headers=headers)
    h = dbx_adapter.submit(plan)
    assert len(fake.runs) == 1 and int(h.native_id) in fake.runs
    assert len(fake.calls("POST", r"/api/2\.2/jobs/runs/submit")) == 2
    # a lost answer followed by a client retry: same token -> same run
    assert dbx_adapter.submit(plan).native_id == h.native_id and len(fake.runs) == 1


def test_no_host_is_a_spec_error_and_sends_nothing(dbx_adapter, fake, spec_factory, monkeypatch):
    monkeypatch.delenv("DATABRICKS_HOST")
    plan = dbx_adapter.plan(_spec(spec_factory), "s-nohost")  # plan needs no host
    with pytest.raises(SpecError) as ei:
        dbx_adapter.submit(plan)
    assert ei.value.exit_code == 2
    assert ei.value.issues[0].loc == ("targets", "databricks", "host")
    assert fake.requests == []


def test_host_from_the_spec_options(dbx_adapter, fake, spec_factory, monkeypatch):
    monkeypatch.delenv("DATABRICKS_HOST")
    spec = spec_factory(f"""
    name: hosted
    script: src/train.py
    targets:
      databricks: {{host: "{fake.url}"}}
    """)
    h = dbx_adapter.submit(dbx_adapter.plan(spec, "s-h"))
    assert h.extra["host"] == fake.url and int(h.native_id) in fake.runs


def test_check_reports_each_missing_piece(dbx_adapter, monkeypatch):
    assert dbx_adapter.check().ready
    monkeypatch.delenv("DATABRICKS_HOST")
    monkeypatch.delenv("DATABRICKS_TOKEN")
    r = dbx_adapter.check()
    assert not r.ready
    assert any("host" in p for p in r.problems) and any("credentials" in p for p in r.problems)
    assert all("\n" not in p and "x" != p for p in r.problems)


def test_endpoint_create_split_delete(dbx_adapter, fake, spec_factory):
    spec = spec_factory("""
    name: ranker
    labels: {team: ml}
    script: src/train.py
    endpoint:
      model: main.ml.ranker
      model_version: "3"
      accelerator: A10G
      min_replicas: 0
      max_replicas: 4
      variants:
        - {name: current, weight: 80}
        - {name: canary, model: "models:/main.ml.ranker/4", weight: 20}
    """)
    plan = dbx_adapter.plan_endpoint(spec)
    body = plan.requests[0].body
    ents = body["config"]["served_entities"]
    assert [(e["name"], e["entity_name"], e["entity_version"]) for e in ents] == [
        ("current", "main.ml.ranker", "3"), ("canary", "main.ml.ranker", "4")]
    assert {e["workload_type"] for e in ents} == {"GPU_MEDIUM"}
    assert {e["workload_size"] for e in ents} == {"Medium"}
    assert all(e["scale_to_zero_enabled"] for e in ents)
    assert body["config"]["traffic_config"]["routes"] == [
        {"served_entity_name": "current", "traffic_percentage": 80},
        {"served_entity_name": "canary", "traffic_percentage": 20}]
    h = dbx_adapter.deploy(plan)
    assert fake.calls("POST", r"/api/2\.0/serving-endpoints")[0].json() == body
    st = dbx_adapter.endpoint_status(h)
    assert st.state == "IN_SERVICE" and st.traffic == {"current": 80, "canary": 20}
    dbx_adapter.set_traffic(h, {"current": 0, "canary": 100})
    assert dbx_adapter.endpoint_status(h).traffic == {"current": 0, "canary": 100}
    put = fake.calls("PUT", r"/api/2\.0/serving-endpoints/ranker/config")[0].json()
    assert put["served_entities"] == ents
    dbx_adapter.undeploy(h)
    dbx_adapter.undeploy(h)  # already gone is fine
    assert fake.endpoints == {}


def test_driver_log_from_a_volume_cluster_log_dir(dbx_adapter, fake, spec_factory):
    spec = spec_factory("""
    name: logged
    script: src/train.py
    targets: {databricks: {cluster_log_dir: /Volumes/main/ml/logs}}
    """)
    plan = dbx_adapter.plan(spec, "s-log")
    nc = plan.requests[0].body["tasks"][0]["new_cluster"]
    assert nc["cluster_log_conf"] == {"volumes": {"destination": "/Volumes/main/ml/logs"}}
    h = dbx_adapter.submit(plan)
    rid = int(h.native_id)
    cluster = fake.runs[rid]["tasks"][0]["cluster_instance"]["cluster_id"]
    fake.files[f"/Volumes/main/ml/logs/{cluster}/driver/stdout"] = b"driver says hi\n"
    fake.set_state(rid, "TERMINATED", "SUCCESS")
    lines = list(dbx_adapter.logs(h))
    assert "[driver stdout] driver says hi" in lines


def test_the_fake_rejects_a_malformed_body(dbx_env):
    """The fake is a real check: a field SubmitTask does not know fails the request."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    w = WorkspaceClient(host=dbx_env.url, token="x")
    bad = {"run_name": "x", "tasks": [{"task_key": "a", "new_cluster": {"spark_version": "15.4.x-scala2.12",
                                                                          "node_type_id": "m5.xlarge", "num_workers": 1,
                                                                          "gpu_count": 2}}]}
    with pytest.raises(DatabricksError):
        w.api_client.do("POST", "/api/2.2/jobs/runs/submit", body=bad)
    assert len(dbx_env.errors) == 1 and "round-trip" in str(dbx_env.errors[0])
    assert dbx_env.runs == {}
    dbx_env.errors.clear()


def test_a_retried_deploy_keeps_one_endpoint(dbx_adapter, fake, spec_factory):
    spec = spec_factory("""
    name: once
    script: src/train.py
    endpoint: {model: "models:/main.ml.m/7"}
    """)
    plan = dbx_adapter.plan_endpoint(spec)
    assert dbx_adapter.deploy(plan).name == dbx_adapter.deploy(plan).name == "once"
    assert list(fake.endpoints) == ["once"]


def test_status_of_an_unknown_endpoint_is_not_found(dbx_adapter):
    from unijob.contract import EndpointHandle
    from unijob.errors import NotFound

    with pytest.raises(NotFound):
        dbx_adapter.endpoint_status(EndpointHandle(target="databricks", name="nope"))


def test_a_plan_for_another_cloud_than_the_workspace_is_refused(dbx_adapter, fake, spec_factory):
    spec = spec_factory("""
    name: wrongcloud
    script: src/train.py
    targets: {databricks: {host: "https://adb-123.4.azuredatabricks.net", cloud: aws}}
    """)
    with pytest.raises(SpecError) as ei:
        dbx_adapter.submit(dbx_adapter.plan(spec, "s"))
    assert ei.value.issues[0].loc == ("targets", "databricks", "cloud") and ei.value.issues[0].suggestion == "azure"
    assert fake.requests == []
