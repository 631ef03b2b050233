"""The Databricks adapter: one-off Jobs runs (``runs/submit``), Model Serving endpoints, and the
Unity Catalog model registry (:mod:`.registry`).

Importing this module imports no ``databricks.sdk``; every method that needs it imports it.
See :mod:`.plan` for the request, :mod:`.client` for states and logs, :mod:`.endpoints` for serving.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from typing import Any, ClassVar, Iterator, Mapping, Optional

from unijob.contract import Adapter, EndpointHandle, EndpointStatus, InvokeResult, JobHandle, JobStatus, Plan
from unijob.errors import Readiness, UsageError

from .options import DatabricksOptions
from .registry import UnityCatalogRegistry
from .runtime_env import DatabricksRuntimeEnv


class DatabricksAdapter(UnityCatalogRegistry, Adapter):
    """``--target databricks``.

    Args:
        retry_timeout_seconds: the SDK's total retry budget for 429/503 answers (its default is
            300 s); tests pass a few seconds.
        poll_seconds: seconds between polls when ``logs(follow=True)`` waits for the run to end.
    """

    name: ClassVar[str] = "databricks"
    options_model = DatabricksOptions
    install_hint: ClassVar[str] = "pip install 'unijob[databricks]'"
    runtime_env = DatabricksRuntimeEnv
    unsupported: ClassVar[Mapping[str, str]] = {
        "image with resources.nodes > 1": "a container job's command runs on the cluster driver; multi-node "
                                          "gangs run as script jobs through TorchDistributor",
        "image on an ML runtime": "Databricks Runtime for Machine Learning does not support Databricks Container Services",
        "endpoint.image / endpoint.handler": "Databricks Model Serving serves registered MLflow models (Unity Catalog)",
        "endpoint.autoscaling": "Databricks autoscales serving on concurrency within the workload size itself",
        "spot.max_wait": "Databricks has no wait-for-capacity bound; SPOT_WITH_FALLBACK falls back at once",
        "secrets env:// and k8s-secret://": "a Databricks cluster cannot read them; use databricks-secret://SCOPE/KEY",
    }

    def __init__(self, *, retry_timeout_seconds: Optional[int] = None, poll_seconds: float = 10.0) -> None:
        self.retry_timeout_seconds = retry_timeout_seconds
        self.poll_seconds = poll_seconds
        self._clients: dict = {}

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        """Package, host, credentials and cloud, one line each; opens no connection."""
        from .client import profile_settings

        problems: list[str] = []
        details: dict[str, str] = {}
        try:
            found = importlib.util.find_spec("databricks.sdk") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append("databricks-sdk is not installed: pip install 'unijob[databricks]'")
        prof = profile_settings(None)
        host = ((spec.target_options("databricks").get("host") if spec is not None else None)
                or os.environ.get("DATABRICKS_HOST") or prof.get("host"))
        if host:
            details["host"] = host
        else:
            problems.append("no workspace host in DATABRICKS_HOST or ~/.databrickscfg; "
                            "set one, or targets.databricks.host in the spec")
        creds = any(os.environ.get(k) for k in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "ARM_CLIENT_ID",
                                                "DATABRICKS_AUTH_TYPE", "DATABRICKS_CONFIG_PROFILE")) or prof.get("credentials")
        if not creds:
            problems.append("no Databricks credentials: set DATABRICKS_TOKEN (or OAuth DATABRICKS_CLIENT_ID/"
                            "DATABRICKS_CLIENT_SECRET) or a ~/.databrickscfg profile")
        from .client import cloud_of_host

        details["cloud"] = (cloud_of_host(host) or "unknown from the host") + \
            "; plans use targets.databricks.cloud (default aws) for node types and spot spelling"
        # A host may still come from the spec (targets.databricks.host), which check() cannot see:
        # submit() then raises a SpecError (exit 2) if there is none at all.
        ready = found and bool(creds)
        return Readiness(ready=ready, problems=problems, details=details)

    # ---- jobs -------------------------------------------------------------------------------

    def plan(self, spec, submission_id: str) -> Plan:
        from .plan import build_job_plan

        return build_job_plan(spec, submission_id, self.options(spec))

    def _client(self, extra: Mapping, *, timeout: Optional[float] = None):
        """One WorkspaceClient per (host, profile, resolved env host, timeout) for this adapter
        instance. ``timeout`` (seconds) bounds each HTTP request and the retry budget."""
        from .client import workspace_client

        key = (extra.get("host"), extra.get("profile"), os.environ.get("DATABRICKS_HOST"), timeout)
        if key not in self._clients:
            retry = self.retry_timeout_seconds
            if timeout is not None:
                cap = max(1, math.ceil(timeout))
                retry = min(retry or cap, cap)
            self._clients[key] = workspace_client(extra.get("host"), extra.get("profile"), retry, timeout)
        return self._clients[key]

    def submit(self, plan: Plan) -> JobHandle:
        from . import client

        client.check_cloud(plan.extra.get("host"), plan.extra.get("profile"), plan.extra.get("cloud"))
        w = self._client(plan.extra)
        if plan.extra.get("dry_run"):
            return JobHandle(target=self.name, native_id="", name=plan.name, submission_id=plan.submission_id,
                             extra={"dry_run": True})
        run_id = client.submit(w, plan)
        extra = {k: plan.extra.get(k) for k in ("host", "profile", "cluster_log_dir") if plan.extra.get(k)}
        output = _output_uri(plan.requests[0].body.get("tasks") or [])
        if output:
            extra["output_uri"] = output
        return JobHandle(target=self.name, native_id=str(run_id), name=plan.name, submission_id=plan.submission_id,
                         extra=extra)

    def status(self, handle: JobHandle) -> JobStatus:
        from . import client

        return client.status(self._client(handle.extra), int(handle.native_id))

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        from . import client

        w = self._client(handle.extra)
        run_id = int(handle.native_id)
        if follow:
            last = None
            while True:
                st = client.status(w, run_id)
                if st.native_state != last:
                    yield f"[databricks] {st.native_state}" + (f": {st.message.splitlines()[0]}" if st.message else "")
                    last = st.native_state
                if st.state.is_final:
                    break
                time.sleep(self.poll_seconds)
        yield from client.output_lines(w, run_id, handle.extra.get("cluster_log_dir"))

    def cancel(self, handle: JobHandle) -> None:
        from . import client

        client.cancel(self._client(handle.extra), int(handle.native_id))

    def model_artifact(self, handle: JobHandle) -> str:
        """The run's output location: the spec's ``output`` (a Unity Catalog volume, DBFS or cloud
        URI), which the run's tasks got as ``UNIJOB_OUTPUT_URI`` in ``new_cluster.spark_env_vars``
        (kept in the handle at submit; else read back with ``runs/get``). Whether files are there
        is not checked: the Files API lists volumes only, not DBFS or cloud URIs.

        Raises:
            UsageError: the run had no output location. NotFound / TargetError: runs/get failed.
        """
        from . import client

        output = handle.extra.get("output_uri")
        if not output:
            run = client._get_run(self._client(handle.extra), int(handle.native_id))
            output = _output_uri([t.as_dict() for t in (run.tasks or [])])
        if not output:
            raise UsageError(f"Databricks run {handle.native_id} wrote no model: it had no output location "
                             "(give the spec an output, e.g. a /Volumes/... path or dbfs:/ URI)")
        return output

    # ---- batch prediction -------------------------------------------------------------------

    def plan_batch(self, spec, submission_id: str) -> Plan:
        """A one-off run mapping the handler over the input files with Spark (:mod:`.batch`);
        submit, status, logs and cancel are the jobs'."""
        from .batch import plan_batch

        return plan_batch(spec, submission_id, self.options(spec))

    # ---- endpoints --------------------------------------------------------------------------

    def plan_endpoint(self, spec) -> Plan:
        from .endpoints import build_endpoint_plan

        return build_endpoint_plan(spec, self.options(spec))

    def deploy(self, plan: Plan) -> EndpointHandle:
        from . import endpoints

        return endpoints.deploy(self._client(plan.extra), plan)

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        from . import endpoints

        return endpoints.status(self._client(handle.extra), handle)

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        from . import endpoints

        endpoints.set_traffic(self._client(handle.extra), handle, split)

    def undeploy(self, handle: EndpointHandle) -> None:
        from . import endpoints

        endpoints.undeploy(self._client(handle.extra), handle)

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        """Query the serving endpoint: ``payload`` is a JSON object whose keys are
        ``ServingEndpointsAPI.query``'s (``{"instances": [...]}``, ``inputs``, ``dataframe_records``,
        ``dataframe_split``...). The traffic split picks the served entity unless ``variant`` pins
        one; the answer reports the one that served. ``timeout`` (seconds) bounds each HTTP request
        and the SDK's retries. See :func:`unijob_adapters.databricks.endpoints.invoke` for errors."""
        from . import endpoints

        return endpoints.invoke(self._client(handle.extra, timeout=timeout), handle, payload, variant=variant)


def _output_uri(tasks: list) -> Optional[str]:
    """``UNIJOB_OUTPUT_URI`` of the first task whose ``new_cluster.spark_env_vars`` has one."""
    for t in tasks:
        env = (t.get("new_cluster") or {}).get("spark_env_vars") or {}
        if env.get("UNIJOB_OUTPUT_URI"):
            return env["UNIJOB_OUTPUT_URI"]
    return None
