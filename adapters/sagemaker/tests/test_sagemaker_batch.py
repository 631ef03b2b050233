"""Batch Transform: the plan's bodies checked with botocore's service model, sent to moto, and the
job's status, as for training jobs."""

from __future__ import annotations

import pytest

from sagemaker_testkit import REGION, ROLE, validate_against_model
import unijob
from unijob.errors import SpecError
from unijob.spec import JobSpec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

SERVING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/unijob-serve:0.1"


def _spec(**batch):
    b = {"handler": "serve:Digits", "model": "s3://models/digits/v2/model.tar.gz", "input": "s3://data/digits/",
         "output": "s3://data/predictions/", "replicas": 2, "instances_per_request": 100,
         "instance_type": {"sagemaker": "ml.m5.xlarge"}}
    b.update(batch)
    return JobSpec.model_validate({"name": "digits", "batch": b, "labels": {"team": "ml"}, "targets": {"sagemaker": {
        "role_arn": ROLE, "region": REGION, "serving_image": SERVING}}})


def test_plan_is_a_valid_transform_job():
    plan = SageMakerAdapter().plan_batch(_spec(), "k1")
    assert [r.api for r in plan.requests] == ["sagemaker:CreateModel", "sagemaker:CreateTransformJob"]
    for r in plan.requests:
        validate_against_model("sagemaker", r.api.split(":")[1], r.body)
    model, job = (r.body for r in plan.requests)
    assert model["PrimaryContainer"] == {"Image": SERVING, "ModelDataUrl": "s3://models/digits/v2/model.tar.gz",
                                         "Environment": {"UNIJOB_HANDLER": "serve:Digits"}}
    assert job["ModelName"] == model["ModelName"]
    assert (job["BatchStrategy"], job["TransformInput"]["SplitType"], job["TransformOutput"]["AssembleWith"]) == (
        "MultiRecord", "Line", "Line")
    assert job["MaxPayloadInMB"] == 6 and job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://data/digits/"
    assert plan.kind == "batch" and SageMakerAdapter().plan_batch(_spec(), "k1") == plan
    assert SageMakerAdapter().plan_batch(_spec(), "k2").name != plan.name


def test_plan_errors_name_the_field():
    with pytest.raises(SpecError) as e:
        SageMakerAdapter().plan_batch(_spec(input="./local"), "k")
    assert e.value.issues[0].loc == ("batch", "input")
    no_image = _spec()
    no_image.targets["sagemaker"].pop("serving_image")
    with pytest.raises(SpecError, match="serving_image"):
        SageMakerAdapter().plan_batch(no_image, "k")


def test_submit_status_through_moto_and_idempotent(aws, sent, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))  # records of this test only
    job = unijob.batch_predict(_spec(), "sagemaker", idempotency_key="batch-1")
    assert job.target == "sagemaker" and job.native_id.startswith("digits-")
    again = unijob.batch_predict(_spec(), "sagemaker", idempotency_key="batch-1")
    assert again.id == job.id and again.already_submitted
    ops = [op for op, _ in sent]
    assert ops.count("sagemaker:CreateTransformJob") == 1
    st = job.status()
    assert st.native_state == "Completed" and st.state.value == "SUCCEEDED"  # moto completes at once
    job.cancel()  # a finished transform job is left as it is
    assert "sagemaker:StopTransformJob" not in [op for op, _ in sent]

