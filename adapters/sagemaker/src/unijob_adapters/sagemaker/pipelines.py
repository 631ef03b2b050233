"""Submit a compiled SageMaker pipeline (:mod:`unijob.pipeline.sagemaker`): upload each job step's
``sourcedir.tar.gz``, create each registered model's Model Package Group (Pipelines' RegisterModel
step does not), ``CreatePipeline`` (``UpdatePipeline`` when the pipeline exists: the definition
is replaced), then ``StartPipelineExecution`` with the run's parameter overrides
(SageMaker API Reference, https://docs.aws.amazon.com/sagemaker/latest/APIReference/, read
2026-11-29).
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from unijob.contract import Plan

from .client import already_exists, client, wrap


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
