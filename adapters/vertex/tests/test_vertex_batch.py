"""Vertex batch prediction: plans (models:upload + batchPredictionJobs, each body parsed by the
aiplatform_v1 types with unknown fields refused), and submit, status, logs and cancel against the
fake (jobs left PENDING here and moved by the test; test_vertex_batch_contract.py runs them)."""

from __future__ import annotations

import pytest

import unijob
from unijob.errors import SpecError

SERVE = "us-docker.pkg.dev/p/r/unijob-serve:0.1"


def _spec(make_spec, **batch):
    b = {"handler": "serve:Digits", "model": "gs://bucket/models/digits/2", "input": "gs://bucket/in/digits.jsonl",
         "output": "gs://bucket/out/", "replicas": 3, "instances_per_request": 50, "accelerator": "L4"}
    b.update(batch)
    spec = make_spec(batch=b)
    spec.targets["vertex"]["serving_image"] = SERVE
    return spec


def test_plan_bodies_parse_as_vertex_types(adapter, make_spec):
    from google.cloud import aiplatform_v1 as aip

    plan = adapter.plan_batch(_spec(make_spec), "k1")
    upload, job = plan.requests
    assert upload.api.endswith("/models:upload") and job.api.endswith("/batchPredictionJobs")
    aip.UploadModelRequest.from_json(__import__("json").dumps({"parent": "p", **upload.body}), ignore_unknown_fields=False)
    parsed = aip.BatchPredictionJob.from_json(__import__("json").dumps(job.body), ignore_unknown_fields=False)
    assert parsed.input_config.instances_format == "jsonl"
    assert list(parsed.input_config.gcs_source.uris) == ["gs://bucket/in/digits.jsonl"]
    assert parsed.output_config.gcs_destination.output_uri_prefix == "gs://bucket/out/"
    assert parsed.dedicated_resources.starting_replica_count == 3 == parsed.dedicated_resources.max_replica_count
    assert parsed.dedicated_resources.machine_spec.accelerator_type.name == "NVIDIA_L4"
    assert parsed.manual_batch_tuning_parameters.batch_size == 50
    assert parsed.model.endswith("/models/" + upload.body["modelId"])
    env = {e["name"]: e["value"] for e in upload.body["model"]["containerSpec"]["env"]}
    assert env["UNIJOB_HANDLER"] == "serve:Digits" and upload.body["model"]["artifactUri"] == "gs://bucket/models/digits/2"


def test_plan_errors(adapter, make_spec):
    with pytest.raises(SpecError) as e:
        adapter.plan_batch(_spec(make_spec, output="s3://b/out"), "k")
    assert e.value.issues[0].loc == ("batch", "output")
    spec = _spec(make_spec)
    spec.targets["vertex"].pop("serving_image")
    with pytest.raises(SpecError, match="serving_image"):
        adapter.plan_batch(spec, "k")


def _no_fake_errors(fake):
    assert fake.errors == [], fake.errors


def test_submit_uploads_the_model_then_creates_the_job_once(adapter, make_spec, fake):
    plan = adapter.plan_batch(_spec(make_spec, parameters={"k": 3}), "k1")
    h = adapter.submit(plan)
    again = adapter.submit(adapter.plan_batch(_spec(make_spec, parameters={"k": 3}), "k1"))
    assert again.native_id == h.native_id and len(fake.batch_jobs) == 1
    assert len(fake.calls("POST", r".*/models:upload")) == 1 and len(fake.calls("POST", r".*/batchPredictionJobs")) == 1
    job = fake.batch_jobs[h.native_id]
    assert job["state"] == "JOB_STATE_PENDING" and job["modelParameters"] == {"k": 3}
    assert job["model"] in fake.models and job["labels"]["unijob_submission"] == plan.name
    st = adapter.status(h)
    assert (st.state.value, st.native_state) == ("STARTING", "JOB_STATE_PENDING")
    other = adapter.submit(adapter.plan_batch(_spec(make_spec), "k2"))  # another submission of the same Model
    assert other.native_id != h.native_id and len(fake.calls("POST", r".*/models:upload")) == 1
    _no_fake_errors(fake)


@pytest.mark.parametrize("failed,budget,state", [(2, 0.01, "FAILED"), (2, 0.05, "SUCCEEDED"), (0, 0.0, "SUCCEEDED")])
def test_status_applies_the_error_budget_to_completion_stats(adapter, make_spec, fake, failed, budget, state):
    h = adapter.submit(adapter.plan_batch(_spec(make_spec, max_error_fraction=budget), "k"))
    out = "gs://bucket/out/prediction-m-2026-11-29T23_00_00.000000Z"
    fake.set_batch_state(h.native_id, "JOB_STATE_SUCCEEDED", outputInfo={"gcsOutputDirectory": out},
                         completionStats={"successfulCount": str(100 - failed), "failedCount": str(failed)})
    st = adapter.status(h)
    assert st.state.value == state and st.native_state == "JOB_STATE_SUCCEEDED"
    assert out in st.message and f"{100 - failed} predictions, {failed} errors" in st.message
    if state == "FAILED":
        assert "2 of 100 instances failed (2.00% > the error budget 1.00%)" in st.message
    _no_fake_errors(fake)


def test_cancel_and_logs(adapter, make_spec, fake):
    h = adapter.submit(adapter.plan_batch(_spec(make_spec), "k"))
    fake.set_batch_state(h.native_id, "JOB_STATE_RUNNING")
    fake.add_batch_log(h.native_id, "replica-0", "Uvicorn running on http://127.0.0.1:8080")
    assert list(adapter.logs(h)) == ["[replica-0] Uvicorn running on http://127.0.0.1:8080"]
    adapter.cancel(h)
    assert adapter.status(h).state.value == "CANCELLED" and len(fake.calls("POST", r".*:cancel")) == 1
    adapter.cancel(h)  # a finished job is left as it is
    assert len(fake.calls("POST", r".*:cancel")) == 1
    _no_fake_errors(fake)


def test_fake_refuses_a_state_vertex_does_not_have(adapter, make_spec, fake):
    h = adapter.submit(adapter.plan_batch(_spec(make_spec), "k"))
    with pytest.raises(Exception):
        fake.set_batch_state(h.native_id, "DONE")


def test_dry_run_and_bad_input_send_nothing(adapter, make_spec, fake, monkeypatch, tmp_path):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter)
    plan = unijob.batch_predict(_spec(make_spec), "vertex", dry_run=True)
    assert plan.kind == "batch" and fake.requests == []
    with pytest.raises(SpecError) as e:
        unijob.batch_predict(_spec(make_spec, input="s3://b/in.jsonl"), "vertex")
    assert e.value.issues[0].loc == ("batch", "input") and fake.requests == [] and unijob.jobs() == []


def test_cli_bad_input_exits_2_with_file_and_line(adapter, fake, block, monkeypatch, tmp_path, capsys):
    import yaml

    from unijob.cli import main

    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter)
    spec = tmp_path / "batch.yaml"
    spec.write_text(yaml.safe_dump({"name": "digits-batch", "batch": {
        "handler": "serve.py:Digits", "model": "gs://b/model/", "input": "gs://b/in.jsonl", "output": "./out",
        "instances_per_request": 50}, "targets": {"vertex": block(serving_image=SERVE)}}, sort_keys=False))
    assert main(["batch", str(spec), "-t", "vertex"]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:" in err and "batch.output" in err and "gs://" in err, err
    assert fake.requests == []
