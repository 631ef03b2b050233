"""SageMaker real-time endpoints: Model per variant, EndpointConfig, Endpoint, and Application
Auto Scaling target tracking per variant.

References (read 2026-11-21): SageMaker API Reference "CreateModel", "CreateEndpointConfig",
"CreateEndpoint", "UpdateEndpointWeightsAndCapacities"; Application Auto Scaling User Guide,
"Amazon SageMaker AI and Application Auto Scaling" (resource id ``endpoint/<E>/variant/<V>``,
dimension ``sagemaker:variant:DesiredInstanceCount``).

Autoscaling metric mapping (spec ``endpoint.autoscaling.metric`` -> target tracking):

- ``invocations_per_replica_per_minute`` -> predefined ``SageMakerVariantInvocationsPerInstance``
  (invocations per instance per minute).
- ``concurrency`` -> predefined ``SageMakerVariantConcurrentRequestsPerModelHighResolution``
  (in-flight requests per model copy, 10 s resolution; AWS 2024).
- ``gpu_utilization`` -> customized metric ``GPUUtilization`` (namespace ``/aws/sagemaker/Endpoints``,
  dimensions EndpointName/VariantName, Average; percent summed over the instance's GPUs, so the
  target is multiplied by the GPUs per instance).
- ``cpu_utilization`` -> customized ``CPUUtilization`` likewise (x vCPUs per instance).

Scale to zero: production variants keep >= 1 instance; SageMaker scales to zero only with
inference components (Dec 2024), which this adapter does not create, so ``min_replicas: 0`` is a
SpecError naming the reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Mapping

from unijob.contract import EndpointHandle, EndpointStatus, NativeRequest, Plan, PlanResources, validate_split
from unijob.errors import SpecError, TargetError

from .client import already_exists, client, not_found, wrap
from .options import SageMakerOptions, resolve_region, resolve_role

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_PREDEFINED = {
    "invocations_per_replica_per_minute": "SageMakerVariantInvocationsPerInstance",
    "concurrency": "SageMakerVariantConcurrentRequestsPerModelHighResolution",
}
_CUSTOM = {"gpu_utilization": "GPUUtilization", "cpu_utilization": "CPUUtilization"}


def _short(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _name(*parts: str, digest: str) -> str:
    base = "-".join(parts)[: 63 - len(digest) - 1].rstrip("-")
    return f"{base}-{digest}"


def _instance(v: Any, loc: tuple) -> tuple[str, int, float]:
    from unijob.cost import catalog

    explicit = v.instance_type.get("sagemaker")
    if explicit:
        shape = catalog.shape("sagemaker", explicit)
        return explicit, (shape.accelerator_count if shape else 0), (shape.vcpus if shape else 0)
    acc_type, count = (v.accelerator.split(":")[0], int(v.accelerator.split(":")[1])) if v.accelerator else (None, 0)
    try:
        shape = catalog.instance_for("sagemaker", acc_type, count)
    except catalog.NoOffering as e:
        raise SpecError.at(loc + ("accelerator",), e.message) from None
    return shape.instance_type, shape.accelerator_count, shape.vcpus


def _container(v: Any, ep: Any, opts: SageMakerOptions, loc: tuple) -> tuple[str, dict[str, str]]:
    """The image and environment of one variant's ``PrimaryContainer``.

    An ``image`` variant runs that image with ``endpoint.env``. A ``handler`` variant runs
    ``targets.sagemaker.serving_image`` with ``endpoint.env`` plus ``UNIJOB_HANDLER=<handler>``,
    which ``python -m unijob.serve`` reads (the handler wins over an ``UNIJOB_HANDLER`` in env).

    Raises:
        SpecError: a handler variant and no ``serving_image``; a variant with neither.
    """
    env = dict(ep.env)
    if v.image:
        return v.image, env
    if v.handler and opts.serving_image:
        env["UNIJOB_HANDLER"] = v.handler
        return opts.serving_image, env
    if v.handler:
        raise SpecError.at(loc + ("handler",),
                           "SageMaker hosts a container image: a handler needs the unijob serving image; build it "
                           "with `unijob serve-image`, push it to ECR and set targets.sagemaker.serving_image "
                           "(or give image instead of handler)")
    raise SpecError.at(loc + ("image",), "SageMaker hosts a container image: give image (e.g. an AWS DLC "
                                         "pytorch-inference image), or handler with targets.sagemaker.serving_image")


def plan_endpoint(spec: Any, opts: SageMakerOptions) -> Plan:
    """The requests that deploy ``spec.endpoint`` (pure).

    Raises:
        SpecError: no endpoint; ``min_replicas: 0``; a handler variant without
            ``targets.sagemaker.serving_image``; a model that is not an ``s3://`` artifact; an
            accelerator SageMaker lacks.
    """
    ep = spec.endpoint
    if ep is None:
        raise SpecError.at(("endpoint",), "no endpoint section in the spec")
    if ep.min_replicas == 0:
        raise SpecError.at(("endpoint", "min_replicas"),
                           "SageMaker real-time endpoints with production variants cannot scale to zero (scale to "
                           "zero needs inference components, which unijob does not create); use min_replicas: 1")
    role = resolve_role(opts)
    region = resolve_region(opts)
    ep_name = ep.name or spec.name
    declared = bool(ep.variants)
    variants = ep.resolved_variants()
    requests: list[NativeRequest] = []
    prod, models, scaling = [], [], []
    first_itype, first_acc = None, 0
    for i, v in enumerate(variants):
        loc = ("endpoint", "variants", i) if declared else ("endpoint",)
        image, env = _container(v, ep, opts, loc)
        if not (v.model or "").startswith("s3://"):
            raise SpecError.at(loc + ("model",), f"SageMaker loads model artifacts from S3 (s3://.../model.tar.gz), "
                                                 f"got '{v.model}'")
        itype, acc_count, vcpus = _instance(v, loc)
        first_itype = first_itype or itype
        first_acc = first_acc or acc_count
        container: dict[str, Any] = {"Image": image, "ModelDataUrl": v.model}
        if env:
            container["Environment"] = env
        model_body = {"PrimaryContainer": container, "ExecutionRoleArn": role}
        if opts.subnets and opts.security_group_ids:
            model_body["VpcConfig"] = {"Subnets": list(opts.subnets), "SecurityGroupIds": list(opts.security_group_ids)}
        if opts.enable_network_isolation:
            model_body["EnableNetworkIsolation"] = True
        mname = _name(ep_name, v.name, digest=_short(json.dumps(model_body, sort_keys=True)))
        model_body = {"ModelName": mname, **model_body}
        if spec.labels:
            model_body["Tags"] = [{"Key": k, "Value": val} for k, val in sorted(spec.labels.items())]
        requests.append(NativeRequest(api="sagemaker:CreateModel", body=model_body, when="deploy"))
        models.append(mname)
        prod.append({"VariantName": v.name, "ModelName": mname, "InitialInstanceCount": ep.min_replicas,
                     "InstanceType": itype, "InitialVariantWeight": float(v.weight)})
        if ep.max_replicas > ep.min_replicas:
            rid = f"endpoint/{ep_name}/variant/{v.name}"
            scaling.append((rid, _policy(ep, ep_name, v.name, rid, acc_count, vcpus)))
    cfg = {"ProductionVariants": prod}
    if opts.kms_key_id:
        cfg["KmsKeyId"] = opts.kms_key_id
    cfg_name = _name(ep_name, digest=_short(json.dumps(cfg, sort_keys=True)))
    requests.append(NativeRequest(api="sagemaker:CreateEndpointConfig", body={"EndpointConfigName": cfg_name, **cfg},
                                  when="deploy"))
    ep_body: dict[str, Any] = {"EndpointName": ep_name, "EndpointConfigName": cfg_name}
    if spec.labels:
        ep_body["Tags"] = [{"Key": k, "Value": val} for k, val in sorted(spec.labels.items())]
    requests.append(NativeRequest(api="sagemaker:CreateEndpoint", body=ep_body, when="deploy",
                                  note="deploy waits until the endpoint is InService"))
    for rid, policy in scaling:
        requests.append(NativeRequest(api="application-autoscaling:RegisterScalableTarget", when="after-deploy", body={
            "ServiceNamespace": "sagemaker", "ResourceId": rid, "ScalableDimension": DIMENSION,
            "MinCapacity": ep.min_replicas, "MaxCapacity": ep.max_replicas}))
        requests.append(NativeRequest(api="application-autoscaling:PutScalingPolicy", when="after-deploy", body=policy))
    notes = [] if scaling else ["min_replicas == max_replicas: fixed size, no autoscaling registered"]
    return Plan(target="sagemaker", kind="endpoint", name=ep_name, submission_id=cfg_name, requests=requests,
                resources=PlanResources(service="sagemaker-hosting", region=region, instance_type=first_itype,
                                        instance_count=ep.min_replicas * len(variants),
                                        accelerators_per_node=first_acc, hours=730.0),
                notes=notes, extra={"region": region, "retry_mode": opts.retry_mode, "max_attempts": opts.max_attempts,
                                    "poll_interval": opts.poll_interval, "timeout": opts.endpoint_timeout,
                                    "models": models, "endpoint_config": cfg_name,
                                    "variants": [v.name for v in variants]})


def _policy(ep: Any, ep_name: str, variant: str, rid: str, gpus: int, vcpus: float) -> dict[str, Any]:
    metric = ep.autoscaling.metric
    conf: dict[str, Any] = {"TargetValue": float(ep.autoscaling.target),
                            "ScaleInCooldown": int(ep.scale_in_cooldown), "ScaleOutCooldown": int(ep.scale_out_cooldown)}
    if metric in _PREDEFINED:
        conf["PredefinedMetricSpecification"] = {"PredefinedMetricType": _PREDEFINED[metric]}
    else:
        per = gpus if metric == "gpu_utilization" else int(vcpus)
        if per <= 0:
            raise SpecError.at(("endpoint", "autoscaling", "metric"),
                               f"{metric} needs an instance with {'GPUs' if metric == 'gpu_utilization' else 'known vCPUs'}",
                               "invocations_per_replica_per_minute")
        conf["TargetValue"] = float(ep.autoscaling.target) * per
        conf["CustomizedMetricSpecification"] = {
            "MetricName": _CUSTOM[metric], "Namespace": "/aws/sagemaker/Endpoints", "Statistic": "Average",
            "Dimensions": [{"Name": "EndpointName", "Value": ep_name}, {"Name": "VariantName", "Value": variant}]}
    return {"PolicyName": f"unijob-{variant}-{metric}"[:256], "ServiceNamespace": "sagemaker", "ResourceId": rid,
            "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": conf}


def _clients(extra: Mapping[str, Any]):
    kw = {"retry_mode": extra.get("retry_mode", "standard"), "max_attempts": int(extra.get("max_attempts", 8))}
    return client("sagemaker", extra["region"], **kw), client("application-autoscaling", extra["region"], **kw)


_CALLS = {"CreateModel": "create_model", "CreateEndpointConfig": "create_endpoint_config",
          "CreateEndpoint": "create_endpoint", "RegisterScalableTarget": "register_scalable_target",
          "PutScalingPolicy": "put_scaling_policy"}


def _wait_in_service(sm: Any, name: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(extra.get("timeout", 1800))
    while True:
        d = sm.describe_endpoint(EndpointName=name)
        st = d.get("EndpointStatus")
        if st == "InService":
            return d
        if st == "Failed":
            raise TargetError(f"endpoint {name} failed: {d.get('FailureReason', '')}")
        if time.monotonic() > deadline:
            raise TargetError(f"endpoint {name} not InService after {extra.get('timeout')} s (now {st})")
        time.sleep(min(float(extra.get("poll_interval", 10.0)), 30.0))


def deploy(plan: Plan) -> EndpointHandle:
    """Send the plan's requests in order (each idempotent), waiting for InService before autoscaling."""
    sm, aas = _clients(plan.extra)
    for req in plan.requests:
        svc, op = req.api.split(":")
        c = sm if svc == "sagemaker" else aas
        if req.when == "after-deploy" and op == "RegisterScalableTarget":
            _wait_in_service(sm, plan.name, plan.extra)
        try:
            getattr(c, _CALLS[op])(**req.body)
        except Exception as e:
            if not already_exists(e):
                raise wrap(e, f"{op} for endpoint {plan.name}") from None
    scaling = [r.body["ResourceId"] for r in plan.requests if r.api.endswith("RegisterScalableTarget")]
    policies = [(r.body["PolicyName"], r.body["ResourceId"]) for r in plan.requests if r.api.endswith("PutScalingPolicy")]
    return EndpointHandle(target="sagemaker", name=plan.name, native_id=plan.name, extra={
        "region": plan.extra["region"], "retry_mode": plan.extra.get("retry_mode", "standard"),
        "max_attempts": plan.extra.get("max_attempts", 8), "models": plan.extra["models"],
        "endpoint_config": plan.extra["endpoint_config"], "variants": plan.extra["variants"],
        "scalable_targets": scaling, "policies": policies})


_STATES = {"Creating": "CREATING", "Updating": "UPDATING", "SystemUpdating": "UPDATING", "RollingBack": "UPDATING",
           "InService": "IN_SERVICE", "Deleting": "DELETING", "Failed": "FAILED", "OutOfService": "FAILED"}


def status(handle: EndpointHandle) -> EndpointStatus:
    """State, traffic percent per variant (weights normalised to 100) and instance counts."""
    sm, _ = _clients(handle.extra)
    try:
        d = sm.describe_endpoint(EndpointName=handle.name)
    except Exception as e:
        raise wrap(e, f"describing endpoint {handle.name}") from None
    weights, replicas = {}, {}
    for pv in d.get("ProductionVariants", []):
        w = pv.get("DesiredWeight", pv.get("CurrentWeight"))
        weights[pv["VariantName"]] = float(w or 0)
        replicas[pv["VariantName"]] = int(pv.get("CurrentInstanceCount") or 0)
    total = sum(weights.values())
    traffic = {k: (round(100 * w / total) if total else 0) for k, w in weights.items()}
    region = handle.extra["region"]
    return EndpointStatus(state=_STATES.get(d.get("EndpointStatus", ""), d.get("EndpointStatus", "")),
                          traffic=traffic, replicas=replicas, message=d.get("FailureReason", ""),
                          url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{handle.name}/invocations")


def set_traffic(handle: EndpointHandle, split: Mapping[str, int]) -> None:
    """UpdateEndpointWeightsAndCapacities with the new weights (percent).

    Raises:
        UsageError: a bad split. TargetError: SageMaker refused.
    """
    full = validate_split(split, list(handle.extra["variants"]))
    sm, _ = _clients(handle.extra)
    try:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=handle.name,
            DesiredWeightsAndCapacities=[{"VariantName": v, "DesiredWeight": float(w)} for v, w in full.items()])
    except Exception as e:
        raise wrap(e, f"changing traffic of endpoint {handle.name}") from None


def undeploy(handle: EndpointHandle) -> None:
    """Delete scaling policies, scalable targets, the endpoint, its config and the models (reverse
    order of deploy); what is already gone is skipped."""
    sm, aas = _clients(handle.extra)
    steps: list[tuple[Any, str, dict[str, Any]]] = []
    for pname, rid in handle.extra.get("policies", []):
        steps.append((aas, "delete_scaling_policy", {"PolicyName": pname, "ServiceNamespace": "sagemaker",
                                                     "ResourceId": rid, "ScalableDimension": DIMENSION}))
    for rid in handle.extra.get("scalable_targets", []):
        steps.append((aas, "deregister_scalable_target", {"ServiceNamespace": "sagemaker", "ResourceId": rid,
                                                          "ScalableDimension": DIMENSION}))
    steps.append((sm, "delete_endpoint", {"EndpointName": handle.name}))
    steps.append((sm, "delete_endpoint_config", {"EndpointConfigName": handle.extra["endpoint_config"]}))
    for m in reversed(handle.extra.get("models", [])):
        steps.append((sm, "delete_model", {"ModelName": m}))
    for c, op, kw in steps:
        try:
            getattr(c, op)(**kw)
        except Exception as e:
            if not not_found(e):
                raise wrap(e, f"{op} for endpoint {handle.name}") from None
