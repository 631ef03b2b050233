"""The SageMaker adapter: training jobs (``CreateTrainingJob``) and real-time endpoints.

Importing this module imports no AWS SDK; boto3 is imported on first use by :mod:`.client`.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Iterator, Mapping, Optional

from unijob.contract import (Adapter, EndpointHandle, EndpointStatus, InvokeResult, JobHandle, JobStatus,
                             Plan)
from unijob.errors import Readiness, SpecError

from .options import ROLE_ENV, SageMakerOptions, resolve_role
from .registry import SageMakerRegistry
from .runtime_env import SageMakerRuntimeEnv


class SageMakerAdapter(SageMakerRegistry, Adapter):
    """``--target sagemaker``. See :mod:`unijob_adapters.sagemaker.plan` for the request it builds."""

    name: ClassVar[str] = "sagemaker"
    options_model: ClassVar[type[SageMakerOptions]] = SageMakerOptions
    install_hint: ClassVar[str] = "pip install 'unijob[sagemaker]'"
    runtime_env = SageMakerRuntimeEnv
    unsupported: ClassVar[Mapping[str, str]] = {
        "endpoint.min_replicas=0": (
            "SageMaker real-time endpoints built from production variants keep at least one instance per "
            "variant; scaling to zero (announced Dec 2024) needs inference components, which this adapter "
            "does not create"),
        "endpoint.handler without targets.sagemaker.serving_image": (
            "SageMaker hosts a container image from ECR: build the unijob serving image (`unijob serve-image`), "
            "push it to ECR and set targets.sagemaker.serving_image; the handler then runs in it"),
        "args with script": "SageMaker script mode passes hyperparameters as the script's --name value "
                            "arguments; put arguments into hyperparameters",
        "secrets other than aws-secretsmanager://": "a SageMaker container can only read AWS Secrets Manager "
                                                    "with its execution role",
        "inputs outside S3": "SageMaker channels read from S3 (s3:// URIs) only in this adapter",
    }

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Optional[Any] = None) -> Readiness:
        """boto3 installed? credentials? region? role? One line per problem; never raises; no secrets.

        With ``spec``, the role and region are taken from its ``targets.sagemaker`` block.
        """
        problems: list[str] = []
        details: dict[str, str] = {}
        try:
            opts = self.options(spec) if spec is not None else SageMakerOptions()
        except SpecError as e:
            return Readiness(False, [e.issues[0].format().replace("\n", " ")], {})
        try:
            import boto3
        except ImportError:
            return Readiness(False, [f"boto3 is not installed: {self.install_hint}"], {})
        try:
            region = opts.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
            region = session.region_name  # the profile's region when none of the above is set
            if region:
                details["region"] = region
            else:
                problems.append("no AWS region: set AWS_REGION (or targets.sagemaker.region)")
            creds = session.get_credentials()
            if creds is None:
                problems.append("no AWS credentials: run `aws configure`, set AWS_PROFILE, or export "
                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            else:
                details["credentials"] = f"from {getattr(creds, 'method', 'unknown')}"
                if session.profile_name and session.profile_name != "default":
                    details["profile"] = session.profile_name
        except Exception as e:  # malformed config files and the like
            problems.append(f"AWS configuration unreadable: {type(e).__name__}")
        if spec is not None or os.environ.get(ROLE_ENV):
            try:
                role = resolve_role(opts)
                details["role"] = role
            except SpecError as e:
                problems.append(e.issues[0].message.split(" e.g.")[0].replace("required", "no SageMaker execution role"))
        else:
            details["role"] = f"not set by default: specs must give targets.sagemaker.role_arn (or set {ROLE_ENV})"
        return Readiness(not problems, problems, details)

    # ---- jobs -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        from .plan import build

        return build(spec, submission_id, self.options(spec))

    def submit(self, plan: Plan) -> JobHandle:
        from . import jobs

        if plan.kind == "batch":
            from . import batch

            return batch.submit(plan)
        return jobs.submit(plan)

    def status(self, handle: JobHandle) -> JobStatus:
        from . import jobs

        if handle.extra.get("kind") == "batch":
            from . import batch

            return batch.status(handle)
        return jobs.status(handle)

    def plan_batch(self, spec: Any, submission_id: str) -> Plan:
        """Batch Transform: CreateModel + CreateTransformJob (:mod:`.batch`)."""
        from .batch import plan_batch

        return plan_batch(spec, submission_id, self.options(spec))

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        from . import jobs, logs

        if handle.extra.get("kind") == "batch":
            from . import batch

            yield from logs.read(handle, handle.native_id, follow=follow, group=logs.TRANSFORM_LOG_GROUP,
                                 is_final=lambda: batch.status(handle).state.is_final)
            return

        state: dict[str, Any] = {"handle": handle}

        def is_final() -> bool:
            st = jobs.status(state["handle"])
            if st.handle_update:
                state["handle"] = JobHandle.from_dict({**handle.to_dict(),
                                                       "extra": {**handle.extra, **st.handle_update}})
            return st.state.is_final

        if handle.extra.get("active"):  # the spot attempt's lines first, then the fallback's
            yield from logs.read(handle, handle.native_id, follow=False, is_final=lambda: True)
        yield from logs.read(handle, jobs.active_name(handle), follow=follow, is_final=is_final)

    def cancel(self, handle: JobHandle) -> None:
        from . import jobs

        if handle.extra.get("kind") == "batch":
            from . import batch

            return batch.cancel(handle)
        jobs.cancel(handle)

    def model_artifact(self, handle: JobHandle) -> str:
        from . import jobs

        return jobs.model_artifact(handle)

    # ---- pipelines --------------------------------------------------------------------------

    def submit_pipeline(self, plan: Plan, params: Mapping[str, Any]) -> dict[str, str]:
        """Start a compiled pipeline on SageMaker Pipelines (:mod:`.pipelines`): returns the pipeline's
        and the execution's ARNs."""
        from .pipelines import submit_pipeline

        return submit_pipeline(plan, params)

    def pipeline_execution(self, execution_id: str) -> dict[str, Any]:
        """A SageMaker Pipelines execution and its steps (:func:`.pipelines.pipeline_execution`)."""
        from .pipelines import pipeline_execution

        return pipeline_execution(execution_id)

    # ---- endpoints --------------------------------------------------------------------------

    def plan_endpoint(self, spec: Any) -> Plan:
        from .endpoints import plan_endpoint

        return plan_endpoint(spec, self.options(spec))

    def deploy(self, plan: Plan) -> EndpointHandle:
        from . import endpoints

        return endpoints.deploy(plan)

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        from . import endpoints

        return endpoints.status(handle)

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        from . import endpoints

        endpoints.set_traffic(handle, split)

    def undeploy(self, handle: EndpointHandle) -> None:
        from . import endpoints

        endpoints.undeploy(handle)

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        """InvokeEndpoint with ``payload`` as JSON (any JSON value); see :mod:`.invoke`."""
        from . import invoke

        return invoke.invoke(handle, payload, variant=variant, timeout=timeout)
