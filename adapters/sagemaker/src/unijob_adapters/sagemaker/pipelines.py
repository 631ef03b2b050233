"""Submit a compiled SageMaker pipeline (:mod:`unijob.pipeline.sagemaker`): upload each job step's
``sourcedir.tar.gz``, create each registered model's Model Package Group (Pipelines' RegisterModel
step does not), ``CreatePipeline`` (``UpdatePipeline`` when the pipeline exists: the definition
is replaced), then ``StartPipelineExecution`` with the run's parameter overrides. Follow an
execution with :func:`pipeline_execution`: ``DescribePipelineExecution``,
``DescribePipelineDefinitionForExecution`` (every step, including those not started) and
``ListPipelineExecutionSteps`` (SageMaker API Reference,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/, read 2026-11-29/30; status values from
botocore's service model).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator, Mapping

from unijob.contract import Plan

from .client import already_exists, client, not_found, wrap

#: ``PipelineExecutionStatus`` -> unijob's run states (those of :mod:`unijob.pipeline.runs`).
#: ``CompletedWithFailures``: the execution ended and some step failed.
EXECUTION_STATES = {"Executing": "RUNNING", "Stopping": "RUNNING", "Stopped": "CANCELLED", "Failed": "FAILED",
                    "Succeeded": "SUCCEEDED", "CompletedWithFailures": "FAILED"}
#: ``StepStatus`` -> unijob's step states (those of :mod:`unijob.pipeline.runner`).
STEP_STATES = {"Starting": "RUNNING", "Executing": "RUNNING", "Stopping": "RUNNING", "Stopped": "CANCELLED",
               "Failed": "FAILED", "Succeeded": "SUCCEEDED"}
#: Attempts for the follow-up calls (botocore retries 5xx and throttling; a person is waiting).
STATUS_ATTEMPTS = 3


def _value(v: Any) -> str:
    """A PipelineParameters value: a string (booleans as ``true``/``false``)."""
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def submit_pipeline(plan: Plan, params: Mapping[str, Any]) -> dict[str, str]:
    """Send ``plan``; returns ``{"pipeline": PipelineArn, "execution": PipelineExecutionArn}``.

    Raises:
        NotReady: boto3 or credentials missing. TargetError: SageMaker or S3 refused.
    """
    from . import jobs

    region = plan.extra["region"]
    opts = {"retry_mode": plan.extra.get("retry_mode", "standard"), "max_attempts": int(plan.extra.get("max_attempts", 8))}
    for up in plan.uploads:
        if up.kind == "sourcedir":
            jobs.upload(Plan(target="sagemaker", name=plan.name, submission_id=plan.submission_id, requests=[],
                             uploads=[up], resources=plan.resources,
                             extra={"region": region, "requirements": plan.extra.get("requirements", {}).get(up.destination),
                                    **opts}))
    sm = client("sagemaker", region, **opts)
    out: dict[str, str] = {}
    for r in plan.requests:
        op = r.api.split(":", 1)[1]
        body = dict(r.body)
        if op == "CreateModelPackageGroup":
            try:
                sm.create_model_package_group(**body)
            except Exception as e:  # noqa: BLE001 - botocore ClientError
                if not already_exists(e):
                    raise wrap(e, f"CreateModelPackageGroup {body['ModelPackageGroupName']}") from None
        elif op == "CreatePipeline":
            try:
                out["pipeline"] = sm.create_pipeline(**body, ClientRequestToken=uuid.uuid4().hex)["PipelineArn"]
            except Exception as e:  # noqa: BLE001
                if not already_exists(e):
                    raise wrap(e, f"CreatePipeline {body['PipelineName']}") from None
                update = {k: v for k, v in body.items() if k in ("PipelineName", "PipelineDisplayName",
                                                                 "PipelineDefinition", "PipelineDescription", "RoleArn")}
                try:
                    out["pipeline"] = sm.update_pipeline(**update)["PipelineArn"]
                except Exception as e2:  # noqa: BLE001
                    raise wrap(e2, f"UpdatePipeline {body['PipelineName']}") from None
        elif op == "StartPipelineExecution":
            if params:
                body["PipelineParameters"] = [{"Name": k, "Value": _value(v)} for k, v in params.items()]
            body["ClientRequestToken"] = uuid.uuid4().hex
            try:
                out["execution"] = sm.start_pipeline_execution(**body)["PipelineExecutionArn"]
            except Exception as e:  # noqa: BLE001
                raise wrap(e, f"StartPipelineExecution {body['PipelineName']}") from None
    return out


def region_of(execution_arn: str) -> str:
    """The region of ``arn:PARTITION:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID``."""
    return execution_arn.split(":")[3]


def _definition_steps(steps: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(name, type) of every step of a definition, a Condition step's ``IfSteps``/``ElseSteps`` after it."""
    for st in steps:
        yield st["Name"], st["Type"]
        if st["Type"] == "Condition":
            args = st.get("Arguments", {})
            yield from _definition_steps(args.get("IfSteps", []) + args.get("ElseSteps", []))


def _job_of(metadata: Mapping[str, Any]) -> str:
    """The ARN of what a step made (training job, transform job, model, model package, endpoint...)."""
    for kind in ("TrainingJob", "TransformJob", "ProcessingJob", "Model", "RegisterModel", "EndpointConfig",
                 "Endpoint", "Job"):
        if metadata.get(kind, {}).get("Arn"):
            return str(metadata[kind]["Arn"])
    return ""


def pipeline_execution(execution_arn: str) -> dict[str, Any]:
    """One pipeline execution and each of its steps.

    Returns:
        ``{"execution": ARN, "pipeline": ARN, "name": pipeline name, "status": PipelineExecutionStatus,
        "state": RUNNING|SUCCEEDED|FAILED|CANCELLED, "message": FailureReason, "steps": {step name:
        {"state", "status", "type", "job_id", "attempts", "message", "started_at", "ended_at",
        "outcome"}}, "warnings": [...]}``, the steps in definition order. A step the execution has not
        started is ``PENDING`` while it runs and ``SKIPPED`` (a false condition) once it succeeded,
        ``NOT_RUN`` once it failed or stopped. Times are epoch seconds.
        When ``ListPipelineExecutionSteps`` is refused (permissions), the steps' state is
        ``UNKNOWN`` and ``warnings`` says why.

    Raises:
        NotFound: no such execution. NotReady: boto3 or credentials missing.
        TargetError: SageMaker refused DescribePipelineExecution.
    """
    from unijob.errors import NotFound

    sm = client("sagemaker", region_of(execution_arn), max_attempts=STATUS_ATTEMPTS)
    try:
        d = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    except Exception as e:  # noqa: BLE001 - botocore ClientError
        if not_found(e):
            raise NotFound(f"no SageMaker pipeline execution {execution_arn}") from None
        raise wrap(e, f"DescribePipelineExecution {execution_arn}") from None
    status = str(d.get("PipelineExecutionStatus", ""))
    state = EXECUTION_STATES.get(status, "RUNNING")
    out: dict[str, Any] = {"execution": execution_arn, "pipeline": d.get("PipelineArn", ""),
                           "name": str(d.get("PipelineArn", "")).rsplit("/", 1)[-1], "status": status, "state": state,
                           "message": d.get("FailureReason") or "", "steps": {}, "warnings": []}
    steps: dict[str, dict[str, Any]] = out["steps"]
    try:
        definition = json.loads(sm.describe_pipeline_definition_for_execution(
            PipelineExecutionArn=execution_arn)["PipelineDefinition"])
        for name, kind in _definition_steps(definition.get("Steps", [])):
            steps[name] = {"state": "PENDING", "status": "", "type": kind}
    except Exception as e:  # noqa: BLE001
        out["warnings"].append(f"the steps not started yet are not shown: {_brief(e, 'DescribePipelineDefinitionForExecution')}")
    listed: list[dict[str, Any]] = []
    try:
        token = None
        while True:
            page = sm.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn, SortOrder="Ascending",
                                                    **({"NextToken": token} if token else {}))
            listed += page.get("PipelineExecutionSteps", [])
            token = page.get("NextToken")
            if not token:
                break
    except Exception as e:  # noqa: BLE001
        out["warnings"].append(f"step states unknown: {_brief(e, 'ListPipelineExecutionSteps')}")
        for s in steps.values():
            s["state"] = "UNKNOWN"
        return out
    for ls in listed:  # ascending: a step listed twice (retried) keeps its last entry
        s = steps.setdefault(ls["StepName"], {"type": ""})
        md = ls.get("Metadata", {})
        s.update(state=STEP_STATES.get(ls.get("StepStatus", ""), "RUNNING"), status=ls.get("StepStatus", ""),
                 job_id=_job_of(md), attempts=int(ls.get("AttemptCount", 1) or 1),
                 message=ls.get("FailureReason") or md.get("Fail", {}).get("ErrorMessage", ""),
                 started_at=_epoch(ls.get("StartTime")), ended_at=_epoch(ls.get("EndTime")))
        if "Condition" in md:
            s["outcome"] = md["Condition"].get("Outcome", "")
    if state != "RUNNING":
        for s in steps.values():
            if s["state"] == "PENDING":
                s["state"] = "SKIPPED" if state == "SUCCEEDED" else "NOT_RUN"
    return out


def _brief(e: BaseException, doing: str) -> str:
    """A one-line account of a failed call (an HTML error page becomes its HTTP status)."""
    from .client import error_code, error_message

    msg = error_message(e).strip()
    if msg.startswith("<"):
        msg = f"HTTP {getattr(e, 'response', {}).get('ResponseMetadata', {}).get('HTTPStatusCode', '?')}"
        return f"{doing}: {msg} (the service does not answer this call)"
    code = error_code(e)
    return f"{doing}: {code + ': ' if code else ''}{msg.splitlines()[0] if msg else type(e).__name__}"


def _epoch(t: Any) -> float | None:
    return t.timestamp() if hasattr(t, "timestamp") else None
