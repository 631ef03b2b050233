"""submit / status / logs / cancel against moto's server; StopTrainingJob and the spot fallback
through botocore's Stubber (which validates every request against the service model)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import tarfile
import time

import pytest

from sagemaker_testkit import REGION, boto3_client, make_spec, validate_against_model
from unijob.contract import JobHandle, JobState
from unijob_adapters.sagemaker import jobs
from unijob_adapters.sagemaker.adapter import SageMakerAdapter


@pytest.fixture
def adapter():
    return SageMakerAdapter()


@pytest.fixture
def bucket(aws):
    boto3_client("s3").create_bucket(Bucket="bucket")
    return "bucket"


def test_submit_sends_the_plan_and_uploads_sourcedir(adapter, tmp_path, bucket, sent):
    plan = adapter.plan(make_spec(tmp_path), "sub-1")
    h = adapter.submit(plan)
    creates = [p for api, p in sent if api == "sagemaker:CreateTrainingJob"]
    assert creates == [plan.request("CreateTrainingJob").body]
    validate_against_model("sagemaker", "CreateTrainingJob", creates[0])
    # the tarball on "S3" is the planned one, and holds the code
    up = plan.uploads[0]
    key = up.destination.split("/", 3)[3]
    blob = boto3_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    import hashlib
    assert hashlib.sha256(blob).hexdigest() == up.sha256
    tar = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)))
    wheel = plan.uploads[1]
    assert wheel.kind == "runtime-wheel" and wheel.destination == f"{up.destination}#{wheel.source}"
    assert sorted(tar.getnames()) == sorted(["requirements.txt", "train.py", "util.py", wheel.source])
    # the toolkit's `pip install -r requirements.txt` (cwd: the code dir) installs the runtime from the file
    assert tar.extractfile("requirements.txt").read().decode().splitlines()[-1] == f"./{wheel.source}"
    assert [api for api, _ in sent].count("s3:PutObject") == 1  # the wheel is not uploaded on its own
    desc = boto3_client("sagemaker").describe_training_job(TrainingJobName=h.native_id)
    assert desc["ResourceConfig"]["InstanceCount"] == 2
    assert desc["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(up.destination)
    assert json.loads(json.dumps(h.to_dict())) == h.to_dict()


def test_retried_submit_creates_no_duplicate(adapter, tmp_path, bucket, sent):
    plan = adapter.plan(make_spec(tmp_path), "sub-2")
    h1, h2 = adapter.submit(plan), adapter.submit(plan)
    assert h1.native_id == h2.native_id
    assert [api for api, _ in sent].count("sagemaker:CreateTrainingJob") == 1
    assert [api for api, _ in sent].count("s3:PutObject") == 1  # content-addressed: uploaded once
    jobs_ = boto3_client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs_] == [h1.native_id]


def test_create_race_already_exists_is_success():
    from botocore.stub import Stubber

    sm = _stub_client()
    body = {"TrainingJobName": "j-1", "RoleArn": "arn:aws:iam::123456789012:role/R",
            "AlgorithmSpecification": {"TrainingImage": "i", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}}
    with Stubber(sm) as st:
        st.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.",
                            expected_params={"TrainingJobName": "j-1"})
        st.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique",
                            expected_params=body)
        jobs.create(sm, body)
        st.assert_no_pending_responses()


def test_status_logs_from_moto(adapter, tmp_path, bucket):
    h = adapter.submit(adapter.plan(make_spec(tmp_path), "sub-3"))
    st = adapter.status(h)
    assert st.state == JobState.SUCCEEDED and st.native_state == "Completed/Completed"
    logs = boto3_client("logs")
    now_ms = int(time.time() * 1000) - 60_000
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    for host, lines in (("algo-2", ["b1", "b2"]), ("algo-1", ["a1", "a2"])):
        stream = f"{h.native_id}/{host}-1700000000"
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
        base = now_ms + (0 if host == "algo-1" else 5)  # CloudWatch drops events > 14 days old
        logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream,
                            logEvents=[{"timestamp": base + 10 * i, "message": m} for i, m in enumerate(lines)])
    other = "someone-else/algo-1-1"
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=other)
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=other,
                        logEvents=[{"timestamp": now_ms, "message": "not mine"}])
    assert list(adapter.logs(h)) == ["[algo-1] a1", "[algo-2] b1", "[algo-1] a2", "[algo-2] b2"]
    assert list(adapter.logs(h, follow=True)) == ["[algo-1] a1", "[algo-2] b1", "[algo-1] a2", "[algo-2] b2"]


def test_logs_before_the_group_exists(adapter, tmp_path, bucket):
    h = adapter.submit(adapter.plan(make_spec(tmp_path), "sub-4"))
    assert list(adapter.logs(h)) == []


# ---- Stubber: what moto lacks (StopTrainingJob) and states moto never reports --------------

_STUB_SESSION = []


def _stub_client():
    import boto3

    if not _STUB_SESSION:
        _STUB_SESSION.append(boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                                   aws_secret_access_key="testing"))
    return _STUB_SESSION[0].client("sagemaker")


def _handle(**extra):
    return JobHandle(target="sagemaker", native_id="ranker-abc", name="ranker-abc", submission_id="s",
                     extra={"region": REGION, **extra})


def _desc(name, status, secondary, transitions=(), spot=True, reason=None):
    now = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)
    d = {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{name}",
         "ModelArtifacts": {"S3ModelArtifacts": "s3://b/o"}, "TrainingJobStatus": status,
         "SecondaryStatus": secondary, "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "i"},
         "ResourceConfig": {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
         "StoppingCondition": {"MaxRuntimeInSeconds": 60}, "CreationTime": now,
         "EnableManagedSpotTraining": spot,
         "SecondaryStatusTransitions": [{"Status": s, "StartTime": now} for s in transitions]}
    if reason:
        d["FailureReason"] = reason
    return d


@pytest.fixture
def stubbed(monkeypatch):
    from botocore.stub import Stubber

    sm = _stub_client()
    monkeypatch.setattr(jobs, "client", lambda *a, **k: sm)
    with Stubber(sm) as st:
        yield st
        st.assert_no_pending_responses()


def test_cancel_stops_in_progress_job(adapter, stubbed):
    stubbed.add_response("describe_training_job", _desc("ranker-abc", "InProgress", "Training", ["Starting", "Training"]),
                         {"TrainingJobName": "ranker-abc"})
    stubbed.add_response("stop_training_job", {}, {"TrainingJobName": "ranker-abc"})
    adapter.cancel(_handle())


def test_cancel_finished_job_is_a_no_op(adapter, stubbed):
    stubbed.add_response("describe_training_job", _desc("ranker-abc", "Stopped", "Stopped"),
                         {"TrainingJobName": "ranker-abc"})
    adapter.cancel(_handle())


@pytest.mark.parametrize("status,secondary,state", [
    ("InProgress", "Starting", JobState.QUEUED),
    ("InProgress", "LaunchingMLInstances", JobState.STARTING),
    ("InProgress", "Downloading", JobState.STARTING),
    ("InProgress", "Training", JobState.RUNNING),
    ("InProgress", "Interrupted", JobState.RESTARTING),
    ("Stopping", "Stopping", JobState.STOPPING),
    ("Stopped", "Stopped", JobState.CANCELLED),
    ("Stopped", "MaxRuntimeExceeded", JobState.FAILED),
    ("Failed", "Failed", JobState.FAILED),
])
def test_state_mapping(adapter, stubbed, status, secondary, state):
    stubbed.add_response("describe_training_job", _desc("ranker-abc", status, secondary), {"TrainingJobName": "ranker-abc"})
    assert adapter.status(_handle()).state == state


def test_restarts_counted_from_transitions(adapter, stubbed):
    trans = ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Starting", "Training",
             "Interrupted", "Starting", "Training"]
    stubbed.add_response("describe_training_job", _desc("ranker-abc", "InProgress", "Training", trans),
                         {"TrainingJobName": "ranker-abc"})
    st = adapter.status(_handle())
    assert st.restarts == 2 and st.state == JobState.RUNNING


def test_spot_capacity_failure_submits_fallback(adapter, stubbed, tmp_path):
    plan = adapter.plan(make_spec(tmp_path, spot={"policy": "spot_with_fallback"}), "s")
    fb = plan.request("CreateTrainingJob", "fallback").body
    h = _handle(fallback=fb, fallback_name=fb["TrainingJobName"])
    stubbed.add_response("describe_training_job",
                         _desc("ranker-abc", "Failed", "Failed", ["Starting"], reason="CapacityError: Unable to provision "
                               "requested ML compute capacity. Please retry using a different ML instance type."),
                         {"TrainingJobName": "ranker-abc"})
    stubbed.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.",
                             expected_params={"TrainingJobName": fb["TrainingJobName"]})
    stubbed.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                                                                   f"training-job/{fb['TrainingJobName']}"}, fb)
    stubbed.add_response("describe_training_job", _desc(fb["TrainingJobName"], "InProgress", "Starting", spot=False),
                         {"TrainingJobName": fb["TrainingJobName"]})
    st = adapter.status(h)
    assert st.state == JobState.QUEUED
    assert st.handle_update["active"] == fb["TrainingJobName"]
    assert "fallback" in st.message and "CapacityError" in st.message
    # from then on the fallback job is reported
    stubbed.add_response("describe_training_job", _desc(fb["TrainingJobName"], "Completed", "Completed", spot=False),
                         {"TrainingJobName": fb["TrainingJobName"]})
    h2 = JobHandle.from_dict({**h.to_dict(), "extra": {**h.extra, **st.handle_update}})
    assert adapter.status(h2).state == JobState.SUCCEEDED


def test_no_fallback_once_training_started(adapter, stubbed, tmp_path):
    plan = adapter.plan(make_spec(tmp_path, spot={"policy": "spot_with_fallback"}), "s")
    fb = plan.request("CreateTrainingJob", "fallback").body
    stubbed.add_response("describe_training_job",
                         _desc("ranker-abc", "Failed", "Failed", ["Starting", "Training"], reason="AlgorithmError: boom"),
                         {"TrainingJobName": "ranker-abc"})
    st = adapter.status(_handle(fallback=fb))
    assert st.state == JobState.FAILED and not st.handle_update


def test_max_wait_exceeded_triggers_fallback():
    assert jobs.needs_fallback(_desc("x", "Stopped", "MaxWaitTimeExceeded", ["Starting"]))
    assert not jobs.needs_fallback(_desc("x", "Stopped", "MaxWaitTimeExceeded", ["Starting"], spot=False))
