"""Batch prediction on SageMaker: Batch Transform (``CreateModel`` then ``CreateTransformJob``).

The transform job splits each S3 input object by line (``SplitType: Line``), sends up to
``MaxPayloadInMB`` of lines per request (``BatchStrategy: MultiRecord``) as JSON Lines to the
model container's ``/invocations``, and joins the answers line by line (``AssembleWith: Line``)
into ``<input object>.out`` under ``S3OutputPath`` (SageMaker API reference, CreateTransformJob,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html, read
2026-11-29). The container is the serving image (``unijob.serve`` takes JSON Lines and answers one
line per instance) with ``UNIJOB_HANDLER``, or ``batch.image``. ``batch.replicas`` is the
``InstanceCount``; ``MaxConcurrentTransforms`` 1 per instance keeps the order of each object.

States (DescribeTransformJob ``TransformJobStatus``): InProgress -> RUNNING, Completed ->
SUCCEEDED, Failed -> FAILED, Stopping -> STOPPING, Stopped -> CANCELLED.
"""

from __future__ import annotations

import json
from typing import Any

from unijob.contract import JobHandle, JobState, JobStatus, NativeRequest, Plan, PlanResources
from unijob.errors import NotFound, SpecError

from .client import already_exists, client, not_found, wrap
from .endpoints import _instance, _name, _short
from .options import SageMakerOptions, resolve_region, resolve_role

#: SageMaker's default and the largest payload a MultiRecord request may carry (MB).
MAX_PAYLOAD_MB = 6
_STATES = {"InProgress": JobState.RUNNING, "Completed": JobState.SUCCEEDED, "Failed": JobState.FAILED,
           "Stopping": JobState.STOPPING, "Stopped": JobState.CANCELLED}
JSON_LINES = "application/jsonlines"


def plan_batch(spec: Any, submission_id: str, opts: SageMakerOptions) -> Plan:
    """CreateModel + CreateTransformJob for ``spec.batch`` (pure).

    Raises:
        SpecError: the model is not an S3 artifact; input or output not in S3; a handler batch
            without ``targets.sagemaker.serving_image``; an accelerator SageMaker lacks.
    """
    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    for field in ("model", "input", "output"):
        value = getattr(b, field) or ""
        if not value.startswith("s3://"):
            raise SpecError.at(("batch", field), f"SageMaker Batch Transform reads and writes S3 (s3://...); got '{value}'")
    env = dict(spec.env)
    if b.image:
        image = b.image
    elif opts.serving_image:
        image = opts.serving_image
        env["UNIJOB_HANDLER"] = b.handler
    else:
        raise SpecError.at(("batch", "handler"), "SageMaker runs a container image: a handler needs the unijob serving image; "
                                                 "build it with `unijob serve-image` and set targets.sagemaker.serving_image")
    role = resolve_role(opts)
    region = resolve_region(opts)
    itype, acc_count, _ = _instance(b, ("batch",))
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": b.model}
    if env:
        container["Environment"] = env
    model_body: dict[str, Any] = {"PrimaryContainer": container, "ExecutionRoleArn": role}
    model_name = _name(spec.name, "batch", digest=_short(json.dumps(model_body, sort_keys=True)))
    model_body = {"ModelName": model_name, **model_body}
    job_name = _name(spec.name, digest=_short(submission_id))
    transform: dict[str, Any] = {
        "TransformJobName": job_name, "ModelName": model_name,
        "BatchStrategy": "MultiRecord", "MaxPayloadInMB": MAX_PAYLOAD_MB, "MaxConcurrentTransforms": 1,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": b.input}},
                           "ContentType": JSON_LINES, "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": b.output, "AssembleWith": "Line", "Accept": JSON_LINES},
        "TransformResources": {"InstanceType": itype, "InstanceCount": b.replicas},
        "Environment": {"UNIJOB_BATCH_SIZE": str(b.instances_per_request)},
    }
    if spec.labels:
        transform["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.labels.items())]
    return Plan(
        target="sagemaker", kind="batch", name=job_name, submission_id=submission_id,
        requests=[NativeRequest(api="sagemaker:CreateModel", body=model_body),
                  NativeRequest(api="sagemaker:CreateTransformJob", body=transform,
                                note=f"{b.replicas} x {itype}, JSON Lines split by line, MultiRecord")],
        resources=PlanResources(service="sagemaker-batch", region=region, instance_type=itype,
                                instance_count=b.replicas, accelerator=(b.accelerator or "").split(":")[0] or None,
                                accelerators_per_node=acc_count, hours=spec.expected_seconds / 3600.0),
        notes=["the error budget (batch.max_error_fraction) is unijob's: Batch Transform fails the job on the first "
               "failed request"] if b.max_error_fraction else [],
        extra={"region": region, "kind": "batch", "retry_mode": opts.retry_mode, "max_attempts": opts.max_attempts},
    )


def submit(plan: Plan) -> JobHandle:
    """Send CreateModel (an existing model of that content-addressed name is reused) and
    CreateTransformJob (an existing job of that name is this submission: idempotent)."""
    sm = client("sagemaker", plan.extra["region"], retry_mode=plan.extra.get("retry_mode", "standard"),
                max_attempts=int(plan.extra.get("max_attempts", 8)))
    if plan.extra.get("dry_run"):
        return JobHandle(target="sagemaker", native_id=plan.name, name=plan.name, submission_id=plan.submission_id,
                         extra={"region": plan.extra["region"], "kind": "batch", "dry_run": True})
    for r in plan.requests:
        op = r.api.split(":", 1)[1]
        try:
            getattr(sm, {"CreateModel": "create_model", "CreateTransformJob": "create_transform_job"}[op])(**r.body)
        except Exception as e:  # noqa: BLE001 - botocore ClientError
            if not already_exists(e):
                raise wrap(e, f"{op} {plan.name}") from None
    return JobHandle(target="sagemaker", native_id=plan.name, name=plan.name, submission_id=plan.submission_id,
                     extra={"region": plan.extra["region"], "kind": "batch"})


def status(handle: JobHandle) -> JobStatus:
    sm = client("sagemaker", handle.extra["region"])
    try:
        d = sm.describe_transform_job(TransformJobName=handle.native_id)
    except Exception as e:  # noqa: BLE001
        if not_found(e):
            raise NotFound(f"SageMaker has no transform job {handle.native_id}") from None
        raise wrap(e, f"DescribeTransformJob {handle.native_id}") from None
    native = d.get("TransformJobStatus", "")
    start, end = d.get("TransformStartTime"), d.get("TransformEndTime")
    return JobStatus(state=_STATES.get(native, JobState.QUEUED), native_state=native,
                     message=d.get("FailureReason", ""),
                     started_at=start.timestamp() if hasattr(start, "timestamp") else None,
                     ended_at=end.timestamp() if hasattr(end, "timestamp") else None)


def cancel(handle: JobHandle) -> None:
    """StopTransformJob; a finished job is left as it is."""
    if status(handle).state.is_final:
        return
    sm = client("sagemaker", handle.extra["region"])
    try:
        sm.stop_transform_job(TransformJobName=handle.native_id)
    except Exception as e:  # noqa: BLE001
        raise wrap(e, f"StopTransformJob {handle.native_id}") from None
