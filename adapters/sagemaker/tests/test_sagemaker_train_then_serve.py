"""Train, then serve what was trained (estimator.fit then estimator.deploy): an endpoint's
``model: job:<name-or-id>`` becomes the job's ``ModelArtifacts.S3ModelArtifacts``, read with
DescribeTrainingJob from moto's server; a job that wrote no model is an error at the model field."""

from __future__ import annotations

import pytest

import unijob
from sagemaker_testkit import REGION, ROLE, boto3_client, make_spec
from unijob.errors import SpecError, UsageError
from unijob.spec import JobSpec

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIJOB_HOME", str(tmp_path / "home"))


@pytest.fixture
def bucket(aws):
    boto3_client("s3").create_bucket(Bucket="bucket")
    return "bucket"


def _endpoint_spec(model: str) -> JobSpec:
    return JobSpec.model_validate({
        "name": "ranker-serve",
        "endpoint": {"image": IMAGE, "instance_type": {"sagemaker": "ml.m5.xlarge"}, "model": model},
        "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}})


def test_job_ref_becomes_the_jobs_model_artifacts(tmp_path, bucket, home, sent):
    job = unijob.submit(make_spec(tmp_path), "sagemaker")
    assert job.status().state is unijob.JobState.SUCCEEDED  # moto completes jobs at once
    desc = boto3_client("sagemaker").describe_training_job(TrainingJobName=job.native_id)
    uri = desc["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri.startswith("s3://bucket/out/") and uri.endswith("/output/model.tar.gz")
    # SageMaker uploads /opt/ml/model as model.tar.gz when the job ends; moto does not, so do it here
    boto3_client("s3").put_object(Bucket="bucket", Key=uri.split("/", 3)[3], Body=b"model")
    for ref in (job.id, job.id[:4], job.native_id, "ranker"):
        plan = unijob.plan(_endpoint_spec(f"job:{ref}"), "sagemaker", endpoint=True)
        model = plan.request("CreateModel").body
        assert model["PrimaryContainer"]["ModelDataUrl"] == uri
        assert any(f"model from job {job.id}" in n for n in plan.notes)
    assert unijob.job(job.id).model_artifact() == uri


def test_a_job_without_model_artifacts_is_an_error_at_the_model_field(tmp_path, bucket, home):
    job = unijob.submit(make_spec(tmp_path), "sagemaker")
    with pytest.raises(UsageError, match="wrote no model: s3://bucket/out/.*model.tar.gz does not exist"):
        job.model_artifact()
    with pytest.raises(SpecError) as e:
        unijob.plan(_endpoint_spec(f"job:{job.id}"), "sagemaker", endpoint=True)
    assert e.value.issues[0].loc == ("endpoint", "model") and "wrote no model" in str(e.value)


def test_a_job_that_did_not_succeed_is_an_error(tmp_path, bucket, home, monkeypatch):
    job = unijob.submit(make_spec(tmp_path), "sagemaker")
    from unijob_adapters.sagemaker import jobs

    real = jobs.describe

    def failed(handle, name=None):
        d = real(handle, name)
        return {**d, "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "AlgorithmError: boom"}

    monkeypatch.setattr(jobs, "describe", failed)
    with pytest.raises(SpecError, match=r"job:ranker: job \w+ \(ranker on sagemaker\) is FAILED.*only a job that "
                                        r"succeeded has a model"):
        unijob.plan(_endpoint_spec("job:ranker"), "sagemaker", endpoint=True)
    with pytest.raises(SpecError, match="no job with id or name 'nosuch'"):
        unijob.plan(_endpoint_spec("job:nosuch"), "sagemaker", endpoint=True)


def test_register_the_jobs_model_then_deploy_it_by_alias(tmp_path, bucket, home):
    """fit -> register (job:<id>) -> approve -> alias -> unijob.plan resolves models:/NAME@ALIAS."""
    import unijob.models as models

    job = unijob.submit(make_spec(tmp_path), "sagemaker")
    desc = boto3_client("sagemaker").describe_training_job(TrainingJobName=job.native_id)
    uri = desc["ModelArtifacts"]["S3ModelArtifacts"]
    boto3_client("s3").put_object(Bucket="bucket", Key=uri.split("/", 3)[3], Body=b"model")
    spec = _endpoint_spec("models:/ranker@champion")
    spec.targets["sagemaker"]["serving_image"] = IMAGE
    v = models.register(f"job:{job.id}", "ranker", target="sagemaker", spec=spec)
    assert v.source == uri
    models.approve("ranker", v.version, target="sagemaker", spec=spec)
    models.alias("ranker", v.version, "champion", target="sagemaker", spec=spec)
    plan = unijob.plan(spec, "sagemaker", endpoint=True)
    assert plan.request("CreateModel").body["PrimaryContainer"]["ModelDataUrl"] == uri
    assert any(n.startswith(f"model models:/ranker@champion: version {v.version} (Approved)") for n in plan.notes)
    with pytest.raises(SpecError) as e:
        unijob.plan(_endpoint_spec("models:/ranker@nosuch"), "sagemaker", endpoint=True)
    assert e.value.issues[0].loc == ("endpoint", "model")
