"""Train, then serve what was trained: ``model: job:<name-or-id>`` becomes the CustomJob's
``baseOutputDirectory`` + ``model/`` (its AIP_MODEL_DIR), read back from the fake over the REST paths;
a job that wrote nothing there, or did not succeed, is an error at the model field."""

from __future__ import annotations

import pytest

import unijob
from unijob.errors import SpecError

SERVE = "us-docker.pkg.dev/p/r/serve:1"


@pytest.fixture(autouse=True)
def _fake_saw_only_valid_requests(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))
    yield
    assert fake.errors == [], f"the fake rejected requests: {fake.errors}"


def _endpoint(make_spec, model):
    return make_spec(name="train-serve", image=None, command=None,
                     endpoint={"image": SERVE, "autoscaling": {"metric": "cpu_utilization", "target": 60}, "variants": [{"name": "blue", "weight": 100, "model": model}]})


def test_job_ref_becomes_the_model_dir_of_the_job(adapter, make_spec, fake, monkeypatch):
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter)
    job = unijob.submit(make_spec(), "vertex")
    fake.set_state(job.native_id, "JOB_STATE_SUCCEEDED")
    with pytest.raises(SpecError) as e:
        unijob.plan(_endpoint(make_spec, "job:train"), "vertex", endpoint=True)
    assert e.value.issues[0].loc == ("endpoint", "variants", 0, "model")
    assert "wrote no model: nothing under gs://bucket/out/model/" in str(e.value)
    fake.objects["gs://bucket/out/model/model.pkl"] = b"weights"
    fake.objects["gs://bucket/out-other/model/x"] = b"not this job's"
    plan = unijob.plan(_endpoint(make_spec, f"job:{job.id}"), "vertex", endpoint=True)
    upload = plan.request("models:upload").body
    assert upload["model"]["artifactUri"] == "gs://bucket/out/model/"
    assert unijob.job(job.native_id).model_artifact() == "gs://bucket/out/model/"


def test_a_failed_job_or_one_without_output_is_an_error(adapter, make_spec, fake, monkeypatch):
    monkeypatch.setattr("unijob.registry.get", lambda name: adapter)
    failed = unijob.submit(make_spec(), "vertex")
    fake.set_state(failed.native_id, "JOB_STATE_FAILED", error=(3, "replica exited 1"))
    with pytest.raises(SpecError, match=r"is FAILED \(replica exited 1\); only a job that succeeded"):
        unijob.plan(_endpoint(make_spec, f"job:{failed.id}"), "vertex", endpoint=True)
    bare = unijob.submit(make_spec(output=None), "vertex", idempotency_key="no-output")
    fake.set_state(bare.native_id, "JOB_STATE_SUCCEEDED")
    with pytest.raises(SpecError, match="it had no baseOutputDirectory"):
        unijob.plan(_endpoint(make_spec, f"job:{bare.id}"), "vertex", endpoint=True)
