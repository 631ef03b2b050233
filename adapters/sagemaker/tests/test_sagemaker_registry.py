"""The SageMaker Model Registry through moto's server: register -> PendingManualApproval -> approve ->
deploy the approved version (models:/NAME/VERSION and models:/NAME@ALIAS resolved at deploy), with
every request checked against botocore's service model."""

from __future__ import annotations

import pytest

from sagemaker_testkit import REGION, ROLE, validate_against_model
import unijob.models as models
from unijob.errors import NotFound, UsageError
from unijob.spec import JobSpec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

SERVING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/unijob-serve:0.1"


def _spec(**endpoint):
    ep = {"handler": "serve:Digits", "instance_type": {"sagemaker": "ml.m5.xlarge"}, "min_replicas": 1, "max_replicas": 2}
    ep.update(endpoint)
    return JobSpec.model_validate({"name": "digits", "endpoint": ep, "targets": {"sagemaker": {
        "role_arn": ROLE, "region": REGION, "poll_interval": 0.05, "serving_image": SERVING}}})


def test_register_approve_alias_then_deploy_the_approved_version(aws, sent):
    spec = _spec(model="s3://unused/x.tar.gz")
    v1 = models.register("s3://models/digits/v1/model.tar.gz", "digits", target="sagemaker", spec=spec,
                         metadata={"accuracy": "0.91"})
    v2 = models.register("s3://models/digits/v2/model.tar.gz", "digits", target="sagemaker", spec=spec)
    assert (v1.version, v1.status, v2.version) == ("1", "PendingManualApproval", "2")
    assert v1.native_id.endswith(":model-package/digits/1")
    create = [p for op, p in sent if op == "sagemaker:CreateModelPackage"]
    assert create[0]["ModelApprovalStatus"] == "PendingManualApproval"
    assert create[0]["InferenceSpecification"]["Containers"] == [
        {"Image": SERVING, "ModelDataUrl": "s3://models/digits/v1/model.tar.gz"}]
    for op, params in sent:
        svc, name = op.split(":")
        validate_against_model(svc, name, params)

    approved = models.approve("digits", "2", target="sagemaker", spec=spec)
    assert approved.status == "Approved"
    assert [p for op, p in sent if op == "sagemaker:UpdateModelPackage"][-1]["ModelApprovalStatus"] == "Approved"
    models.reject("digits", "1", target="sagemaker", spec=spec)
    models.alias("digits", "2", "champion", target="sagemaker", spec=spec)
    vs = models.versions("digits", target="sagemaker", spec=spec)
    assert [(v.version, v.status, v.aliases, v.source) for v in vs] == [
        ("1", "Rejected", [], "s3://models/digits/v1/model.tar.gz"),
        ("2", "Approved", ["champion"], "s3://models/digits/v2/model.tar.gz")]
    # moving the alias
    models.alias("digits", "1", "champion", target="sagemaker", spec=spec)
    assert models.resolve("models:/digits@champion", target="sagemaker", spec=spec).version == "1"
    models.alias("digits", "2", "champion", target="sagemaker", spec=spec)
    assert [m.name for m in models.list_models(target="sagemaker", spec=spec)] == ["digits"]

    # deploy the approved version: the endpoint's CreateModel points at its artifact
    ep_spec = _spec(variants=[{"name": "current", "weight": 90, "model": "models:/digits@champion"},
                              {"name": "previous", "weight": 10, "model": "models:/digits/1"}])
    resolved, used = models.resolve_endpoint_models(ep_spec, "sagemaker")
    plan = SageMakerAdapter().plan_endpoint(resolved)
    urls = [r.body["PrimaryContainer"]["ModelDataUrl"] for r in plan.requests if r.api == "sagemaker:CreateModel"]
    assert urls == ["s3://models/digits/v2/model.tar.gz", "s3://models/digits/v1/model.tar.gz"]
    assert {u: v.status for u, v in used.items()} == {"models:/digits@champion": "Approved", "models:/digits/1": "Rejected"}


def test_registry_errors(aws):
    spec = _spec(model="s3://unused/x.tar.gz")
    with pytest.raises(UsageError, match="S3 artifact"):
        models.register("gs://b/m", "digits", target="sagemaker", spec=spec)
    no_image = JobSpec.model_validate({"name": "d", "endpoint": {"handler": "s:D", "model": "s3://b/m"},
                                       "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}}})
    with pytest.raises(UsageError, match="serving_image"):
        models.register("s3://b/m.tar.gz", "digits", target="sagemaker", spec=no_image)
    with pytest.raises(NotFound, match="no registered model 'ghost'"):
        models.versions("ghost", target="sagemaker", spec=spec)
    models.register("s3://b/m.tar.gz", "digits", target="sagemaker", spec=spec)
    with pytest.raises(NotFound, match="no version 4"):
        models.approve("digits", "4", target="sagemaker", spec=spec)
    with pytest.raises(NotFound, match="no alias 'gold'"):
        models.resolve("models:/digits@gold", target="sagemaker", spec=spec)
