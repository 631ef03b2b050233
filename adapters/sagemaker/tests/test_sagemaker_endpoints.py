"""Endpoints: the plan's bodies (validated with botocore's models), the calls deploy sends to moto,
traffic changes, undeploy order, and what SageMaker cannot do (scale to zero)."""

from __future__ import annotations

import pytest

from sagemaker_testkit import REGION, ROLE, boto3_client, validate_against_model
from unijob.errors import SpecError, UsageError
from unijob.spec import JobSpec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker"


def _spec(**endpoint):
    ep = {"image": IMAGE, "instance_type": {"sagemaker": "ml.m5.xlarge"}, "min_replicas": 1, "max_replicas": 4,
          "autoscaling": {"metric": "invocations_per_replica_per_minute", "target": 70},
          "variants": [{"name": "blue", "model": "s3://bucket/m/v1.tar.gz", "weight": 80},
                       {"name": "green", "model": "s3://bucket/m/v2.tar.gz", "weight": 20}]}
    ep.update(endpoint)
    return JobSpec.model_validate({"name": "ranker", "image": "x:1", "endpoint": ep,
                                   "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION, "poll_interval": 0.05}}})


def test_plan_bodies_are_valid_requests():
    plan = SageMakerAdapter().plan_endpoint(_spec())
    apis = [r.api for r in plan.requests]
    assert apis == ["sagemaker:CreateModel", "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint"] + ["application-autoscaling:RegisterScalableTarget",
                                                   "application-autoscaling:PutScalingPolicy"] * 2
    ops = {"CreateModel": "CreateModel"}
    for r in plan.requests:
        svc, op = r.api.split(":")
        validate_against_model(svc, ops.get(op, op), r.body)
    cfg = plan.request("CreateEndpointConfig").body
    assert [(v["VariantName"], v["InitialVariantWeight"], v["InitialInstanceCount"], v["InstanceType"])
            for v in cfg["ProductionVariants"]] == [("blue", 80.0, 1, "ml.m5.xlarge"), ("green", 20.0, 1, "ml.m5.xlarge")]
    reg = plan.request("RegisterScalableTarget").body
    assert reg == {"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/ranker/variant/blue",
                   "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 1, "MaxCapacity": 4}
    pol = plan.request("PutScalingPolicy").body["TargetTrackingScalingPolicyConfiguration"]
    assert pol["PredefinedMetricSpecification"] == {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert pol["TargetValue"] == 70.0 and pol["ScaleInCooldown"] == 300 and pol["ScaleOutCooldown"] == 60


def test_concurrency_and_gpu_metrics():
    p = SageMakerAdapter().plan_endpoint(_spec(autoscaling={"metric": "concurrency", "target": 4}))
    conf = p.request("PutScalingPolicy").body["TargetTrackingScalingPolicyConfiguration"]
    assert conf["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "SageMakerVariantConcurrentRequestsPerModelHighResolution"
    p = SageMakerAdapter().plan_endpoint(_spec(autoscaling={"metric": "gpu_utilization", "target": 60},
                                               instance_type={"sagemaker": "ml.g5.12xlarge"}))
    body = p.request("PutScalingPolicy").body
    validate_against_model("application-autoscaling", "PutScalingPolicy", body)
    conf = body["TargetTrackingScalingPolicyConfiguration"]
    assert conf["CustomizedMetricSpecification"]["MetricName"] == "GPUUtilization"
    assert conf["TargetValue"] == 240.0  # 60 % x 4 GPUs: SageMaker sums utilisation over the GPUs
    with pytest.raises(SpecError) as ei:
        SageMakerAdapter().plan_endpoint(_spec(autoscaling={"metric": "gpu_utilization", "target": 60}))
    assert ei.value.issues[0].loc == ("endpoint", "autoscaling", "metric")


def test_scale_to_zero_rejected_with_reason():
    adapter = SageMakerAdapter()
    with pytest.raises(SpecError) as ei:
        adapter.plan_endpoint(_spec(min_replicas=0))
    assert ei.value.issues[0].loc == ("endpoint", "min_replicas")
    assert "inference components" in ei.value.issues[0].message
    assert "inference components" in adapter.unsupported["endpoint.min_replicas=0"]


def test_non_s3_model_and_handler_rejected():
    with pytest.raises(SpecError) as ei:
        SageMakerAdapter().plan_endpoint(_spec(variants=[{"name": "a", "model": "gs://b/m", "weight": 100}]))
    assert ei.value.issues[0].loc == ("endpoint", "variants", 0, "model")


SERVING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/unijob-serve:0.1"


def _with_options(spec, **opts):
    block = {**spec.targets["sagemaker"], **opts}
    return spec.model_copy(update={"targets": {**spec.targets, "sagemaker": block}})


def test_handler_without_serving_image_names_the_option():
    adapter = SageMakerAdapter()
    with pytest.raises(SpecError) as ei:
        adapter.plan_endpoint(_spec(image=None, handler="ranker.serve:Model"))
    issue = ei.value.issues[0]
    assert issue.loc == ("endpoint", "variants", 0, "handler")
    assert "unijob serve-image" in issue.message and "targets.sagemaker.serving_image" in issue.message
    single = _spec(image=None, handler="ranker.serve:Model", variants=[], model="s3://bucket/m/v1.tar.gz")
    with pytest.raises(SpecError) as ei:
        adapter.plan_endpoint(single)
    assert ei.value.issues[0].loc == ("endpoint", "handler")
    assert any("serving_image" in k for k in adapter.unsupported)


def test_handler_variant_runs_the_serving_image():
    """A handler variant: the serving image with UNIJOB_HANDLER; an image variant beside it unchanged."""
    spec = _with_options(_spec(env={"LOG_LEVEL": "info"}, variants=[
        {"name": "blue", "model": "s3://bucket/m/v1.tar.gz", "weight": 80},
        {"name": "green", "model": "s3://bucket/m/v2.tar.gz", "weight": 20, "handler": "ranker.serve:Model"}]),
        serving_image=SERVING)
    plan = SageMakerAdapter().plan_endpoint(spec)
    blue, green = [r.body for r in plan.requests if r.api == "sagemaker:CreateModel"]
    for body in (blue, green):
        validate_against_model("sagemaker", "CreateModel", body)
    assert blue["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": "s3://bucket/m/v1.tar.gz",
                                        "Environment": {"LOG_LEVEL": "info"}}
    assert green["PrimaryContainer"] == {"Image": SERVING, "ModelDataUrl": "s3://bucket/m/v2.tar.gz",
                                         "Environment": {"LOG_LEVEL": "info", "UNIJOB_HANDLER": "ranker.serve:Model"}}
    # the whole endpoint served by the handler
    plan = SageMakerAdapter().plan_endpoint(_with_options(_spec(image=None, handler="ranker.serve:Model"),
                                                          serving_image=SERVING))
    containers = [r.body["PrimaryContainer"] for r in plan.requests if r.api == "sagemaker:CreateModel"]
    assert [(c["Image"], c["Environment"]) for c in containers] == [
        (SERVING, {"UNIJOB_HANDLER": "ranker.serve:Model"})] * 2


def test_serving_image_option_is_checked():
    with pytest.raises(SpecError) as ei:
        SageMakerAdapter().plan_endpoint(_with_options(_spec(), serving_image="has space:1"))
    assert ei.value.issues[0].loc == ("targets", "sagemaker", "serving_image")


def test_handler_endpoint_deploys_to_moto(aws, sent):
    adapter = SageMakerAdapter()
    spec = _with_options(_spec(image=None, handler="ranker.serve:Model", min_replicas=1, max_replicas=1),
                         serving_image=SERVING)
    h = adapter.deploy(adapter.plan_endpoint(spec))
    sm = boto3_client("sagemaker")
    for name in h.extra["models"]:
        pc = sm.describe_model(ModelName=name)["PrimaryContainer"]
        assert pc["Image"] == SERVING and pc["Environment"] == {"UNIJOB_HANDLER": "ranker.serve:Model"}
    adapter.undeploy(h)


def test_deploy_traffic_undeploy_against_moto(aws, sent):
    adapter = SageMakerAdapter()
    plan = adapter.plan_endpoint(_spec())
    h = adapter.deploy(plan)
    ops = [api for api, _ in sent if not api.split(":")[1].startswith(("Describe", "List"))]
    assert ops == ["sagemaker:CreateModel", "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
                   "sagemaker:CreateEndpoint", "application-autoscaling:RegisterScalableTarget",
                   "application-autoscaling:PutScalingPolicy", "application-autoscaling:RegisterScalableTarget",
                   "application-autoscaling:PutScalingPolicy"]
    assert [p for api, p in sent if api.endswith("CreateEndpointConfig")] == [plan.request("CreateEndpointConfig").body]
    st = adapter.endpoint_status(h)
    assert st.state == "IN_SERVICE" and st.traffic == {"blue": 80, "green": 20}
    targets = boto3_client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    assert sorted(t["ResourceId"] for t in targets["ScalableTargets"]) == [
        "endpoint/ranker/variant/blue", "endpoint/ranker/variant/green"]
    adapter.deploy(plan)  # idempotent: a second deploy creates nothing new
    assert len(boto3_client("sagemaker").list_models()["Models"]) == 2
    adapter.set_traffic(h, {"blue": 50, "green": 50})
    assert adapter.endpoint_status(h).traffic == {"blue": 50, "green": 50}
    with pytest.raises(UsageError):
        adapter.set_traffic(h, {"blue": 50, "purple": 50})
    del sent[:]
    adapter.undeploy(h)
    assert [api.split(":")[1] for api, _ in sent] == [
        "DeleteScalingPolicy", "DeleteScalingPolicy", "DeregisterScalableTarget", "DeregisterScalableTarget",
        "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel", "DeleteModel"]
    sm = boto3_client("sagemaker")
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    adapter.undeploy(h)  # nothing left: not an error


def test_update_weights_via_stubber_validates_params(monkeypatch):
    """UpdateEndpointWeightsAndCapacities checked against the real service model (Stubber)."""
    import boto3
    from botocore.stub import Stubber

    from unijob.contract import EndpointHandle
    from unijob_adapters.sagemaker import endpoints

    sm = boto3.session.Session(region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t").client("sagemaker")
    monkeypatch.setattr(endpoints, "_clients", lambda extra: (sm, None))
    h = EndpointHandle(target="sagemaker", name="ranker", extra={"region": REGION, "variants": ["blue", "green"]})
    with Stubber(sm) as st:
        st.add_response("update_endpoint_weights_and_capacities",
                        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/ranker"},
                        {"EndpointName": "ranker", "DesiredWeightsAndCapacities": [
                            {"VariantName": "blue", "DesiredWeight": 100.0},
                            {"VariantName": "green", "DesiredWeight": 0.0}]})
        endpoints.set_traffic(h, {"blue": 100})
        st.assert_no_pending_responses()
