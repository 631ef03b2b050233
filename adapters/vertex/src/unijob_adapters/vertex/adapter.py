"""The Vertex AI adapter: CustomJobs for training gangs, Models/Endpoints for serving.

Importing this module imports no google-cloud package; the SDK (google-cloud-aiplatform, REST
transport) is imported inside the methods that call Vertex.

Idempotency: CustomJob create has no request id, so ``submit`` lists custom jobs filtered by the
plan's deterministic display name and its ``unijob_submission`` label before it creates one; the
list-then-create pair is retried as a unit on 429/5xx, so a retried submit never starts a second job.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator, Mapping, Optional

from unijob.contract import (Adapter, EndpointHandle, EndpointStatus, InvokeResult, JobHandle, JobState, JobStatus,
                             Plan)
from unijob.errors import NotFound, NotReady, Readiness, TargetError, UsageError

from unijob_adapters.vertex.client import INSTALL_HINT, RetryPolicy
from unijob_adapters.vertex.options import LOCATION_ENV, PROJECT_ENV, VertexOptions
from unijob_adapters.vertex.registry import VertexRegistry
from unijob_adapters.vertex.runtime_env import VertexRuntimeEnv
from unijob_adapters.vertex.tables import CAPACITY_WORDS, JOB_STATES, SCALE_TO_ZERO_REASON, UNSUPPORTED_METRIC_REASON

# plan.py and endpoints.py (tarfile, gzip, the machine catalog) load when a plan is made, not
# when `validate` only needs this class's options model; TARGET is plan.TARGET.
TARGET = "vertex"

_CONN_KEYS = ("project", "location", "api_endpoint", "logging_endpoint", "storage_endpoint")


class VertexAdapter(VertexRegistry, Adapter):
    """``--target vertex``.

    Args:
        credentials: google-auth credentials; ``None`` uses ``google.auth.default()`` (tests pass
            ``google.auth.credentials.AnonymousCredentials()``).
        retry_policy: backoff for transient API errors (seconds).
        poll_interval: seconds between polls of ``logs(follow=True)``.
    """

    name = TARGET
    options_model = VertexOptions
    install_hint = INSTALL_HINT
    runtime_env = VertexRuntimeEnv
    unsupported = {
        "endpoint.min_replicas=0": SCALE_TO_ZERO_REASON,
        "endpoint.autoscaling.metric=concurrency": UNSUPPORTED_METRIC_REASON,
        "endpoint.autoscaling.metric=invocations_per_replica_per_minute": UNSUPPORTED_METRIC_REASON,
        "secrets: env://": "env:// is resolved on the submitting machine; a Vertex job reads Secret Manager "
                           "(gcp-secretmanager://) instead",
        "spot_with_fallback (native)": "Vertex has no native spot-to-on-demand fallback; unijob resubmits "
                                       "the job ON_DEMAND from the same checkpoint when spot capacity fails",
        "invoke --variant": "Vertex AI's v1 predict API has no per-request deployed model; requests follow "
                            "the endpoint's traffic split (set it to 100 for one variant)",
    }

    def __init__(self, *, credentials: Any = None, retry_policy: Optional[RetryPolicy] = None,
                 poll_interval: float = 10.0) -> None:
        self.credentials = credentials
        self.retry_policy = retry_policy or RetryPolicy()
        self.poll_interval = poll_interval

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        problems: list[str] = []
        details: dict[str, str] = {}
        from unijob_adapters.vertex.client import require_sdk

        try:
            require_sdk()
        except NotReady:
            return Readiness(False, [f"google-cloud-aiplatform is not installed: {INSTALL_HINT}"])
        cred_project = None
        if self.credentials is None:
            try:
                import google.auth

                _, cred_project = google.auth.default()
            except Exception as e:  # DefaultCredentialsError, or anything odd in the environment
                problems.append(f"no Google Cloud credentials ({type(e).__name__}): run "
                                "'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS")
        opts = spec.target_options("vertex") if spec is not None else {}
        project = opts.get("project") or next((os.environ[k] for k in PROJECT_ENV if os.environ.get(k)), None) or cred_project
        if project:
            details["project"] = project
        else:
            problems.append("no project: set GOOGLE_CLOUD_PROJECT or targets.vertex.project in the spec")
        location = opts.get("location") or next((os.environ[k] for k in LOCATION_ENV if os.environ.get(k)), None)
        if location:
            details["location"] = location
        else:
            problems.append("no location: set CLOUD_ML_REGION or targets.vertex.location in the spec (e.g. us-central1)")
        return Readiness(not problems, problems, details)

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        from unijob_adapters.vertex.plan import build_job_plan
        from unijob_adapters.vertex.validate import sdk_location

        opts = self.options(spec)
        sdk_location()  # NotReady when google-cloud-aiplatform is missing; imports nothing
        return build_job_plan(spec, submission_id, opts)  # type: ignore[arg-type]

    def plan_endpoint(self, spec: Any) -> Plan:
        from unijob_adapters.vertex.endpoints import build_endpoint_plan
        from unijob_adapters.vertex.validate import sdk_location

        opts = self.options(spec)
        sdk_location()
        return build_endpoint_plan(spec, opts)  # type: ignore[arg-type]

    # ---- connections ------------------------------------------------------------------------

    def _conn(self, where: Mapping[str, Any]) -> Any:
        from unijob_adapters.vertex.client import Connection

        return Connection(where["project"], where["location"], api_endpoint=where.get("api_endpoint"),
                          logging_endpoint=where.get("logging_endpoint"),
                          storage_endpoint=where.get("storage_endpoint"),
                          credentials=self.credentials, policy=self.retry_policy)

    @staticmethod
    def _find_or_create(conn: Any, body: dict[str, Any]) -> Any:
        """The CustomJob with ``body``'s display name and submission label, created if absent.
        List and create are retried together, so a create whose answer was lost is found next time."""
        from google.cloud import aiplatform_v1 as aip

        from unijob_adapters.vertex.plan import SUBMISSION_LABEL

        job = aip.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)
        flt = (f'display_name="{job.display_name}" AND '
               f'labels.{SUBMISSION_LABEL}="{job.labels[SUBMISSION_LABEL]}"')

        def once() -> Any:
            for found in conn.jobs.list_custom_jobs(request={"parent": conn.parent, "filter": flt}):
                return found
            return conn.jobs.create_custom_job(parent=conn.parent, custom_job=job)

        return conn.call(once)

    # ---- jobs -------------------------------------------------------------------------------

    def plan_batch(self, spec: Any, submission_id: str) -> Plan:
        """models:upload + a BatchPredictionJob (:mod:`unijob_adapters.vertex.batch`, which also
        sends it and reads its status, logs and cancel)."""
        from unijob_adapters.vertex.batch import plan_batch

        return plan_batch(spec, submission_id, self.options(spec))

    def submit(self, plan: Plan) -> JobHandle:
        """Upload the source bundle, then find or create the CustomJob (idempotent per submission).
        A batch plan (``plan.kind == "batch"``) goes to :func:`unijob_adapters.vertex.batch.submit`
        (the Model, then the BatchPredictionJob, found or created the same way).

        With ``plan.extra["dry_run"]`` nothing is uploaded, listed or created: each CustomJob
        body is parsed with the Vertex AI types (``aiplatform_v1.CustomJob``, unknown fields
        refused) and each bundle built; Vertex has no dry-run parameter for customJobs.create.

        Raises:
            TargetError: a body the Vertex types refuse (dry run), or the API refused.
        """
        from unijob_adapters.vertex.plan import source_bytes

        if plan.kind == "batch":
            from unijob_adapters.vertex import batch

            return batch.submit(None if plan.extra.get("dry_run") else self._conn(plan.extra), plan)
        if plan.extra.get("dry_run"):
            self._dry_run(plan)
            return JobHandle(target=TARGET, native_id="", name=plan.name, submission_id=plan.submission_id,
                             extra={"dry_run": True})
        conn = self._conn(plan.extra)
        for up in plan.uploads:
            if up.kind == "runtime-wheel":  # travels inside sourcedir.tar.gz
                continue
            conn.upload(up.destination, source_bytes(up))
        job = self._find_or_create(conn, plan.request("customJobs", when="submit").body)
        extra: dict[str, Any] = {k: plan.extra.get(k) for k in _CONN_KEYS}
        try:
            extra["fallback_request"] = plan.request("customJobs", when="fallback").body
        except KeyError:
            pass
        return JobHandle(target=TARGET, native_id=job.name, name=plan.name, submission_id=plan.submission_id,
                         extra=extra)

    @staticmethod
    def _dry_run(plan: Plan) -> None:
        from google.cloud import aiplatform_v1 as aip

        from unijob_adapters.vertex.plan import source_bytes

        for r in plan.requests:
            if not r.api.endswith("customJobs"):
                continue
            try:
                aip.CustomJob.from_json(json.dumps(r.body), ignore_unknown_fields=False)
            except Exception as e:  # proto-plus / json_format ParseError: the body does not fit the type
                raise TargetError(f"dry run: Vertex AI would refuse customJobs.create ({r.when}): {e}") from None
        for up in plan.uploads:
            if up.kind != "runtime-wheel":
                source_bytes(up)

    def _get(self, conn: Any, name: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return conn.call(lambda: conn.jobs.get_custom_job(name=name))
        except gexc.NotFound:
            raise NotFound(f"Vertex has no custom job {name}") from None

    @staticmethod
    def _status_of(job: Any, *, message: str = "") -> JobStatus:
        native = job.state.name
        err = job.error.message if job.error and job.error.code else ""
        return JobStatus(
            state=JobState(JOB_STATES.get(native, "QUEUED")), native_state=native,
            message="; ".join(m for m in (message, err) if m),
            started_at=job.start_time.timestamp() if job.start_time else None,
            ended_at=job.end_time.timestamp() if job.end_time else None)

    @staticmethod
    def _capacity_failure(job: Any) -> bool:
        if job.state.name not in ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED") or job.start_time:
            return False
        text = f"{job.error.message}".lower() if job.error else ""
        return job.state.name == "JOB_STATE_EXPIRED" or job.error.code == 8 or any(w in text for w in CAPACITY_WORDS)

    def status(self, handle: JobHandle) -> JobStatus:
        conn = self._conn(handle.extra)
        if handle.extra.get("kind") == "batch":
            from unijob_adapters.vertex import batch

            return batch.status(conn, handle)
        fallback = handle.extra.get("fallback_job")
        if fallback:
            return self._status_of(self._get(conn, fallback), message="on-demand fallback after spot capacity failure")
        job = self._get(conn, handle.native_id)
        body = handle.extra.get("fallback_request")
        if body and self._capacity_failure(job):
            fb = self._find_or_create(conn, body)
            st = self._status_of(fb, message=f"spot attempt failed before training started ({job.error.message}); "
                                             f"submitted on-demand fallback {fb.display_name}")
            st.handle_update = {"fallback_job": fb.name}
            return st
        st = self._status_of(job)
        if st.state == JobState.FAILED:
            st.message = self._with_failure_tail(conn, job, st.message)
        return st

    @staticmethod
    def _with_failure_tail(conn: Any, job: Any, message: str, lines: int = 20) -> str:
        """``message`` plus the last lines the failing replica logged (Vertex's error names it:
        ``The replica workerpool0-1 exited with a non-zero status of 1``), as the local target
        shows the failing rank's last lines; ``message`` alone when the logs cannot be read."""
        import re

        m = re.search(r"replica (workerpool\d+-\d+)", job.error.message if job.error else "")
        try:
            entries = list(conn.list_log_entries(job.name.rsplit("/", 1)[-1]))
        except (TargetError, NotReady):  # no Cloud Logging access: the status stands without them
            return message
        task = m.group(1) if m else None
        mine = [_format_entry(e) for e in entries]
        if task:
            mine = [ln for ln in mine if ln.startswith(f"[{task}] ")]
        if not mine:
            return message
        return f"{message}\nLast lines of {task or 'the job'} (Cloud Logging):\n" + "\n".join(mine[-lines:])

    def model_artifact(self, handle: JobHandle) -> str:
        """``<baseOutputDirectory>/model/``: the ``AIP_MODEL_DIR`` Vertex gives the job's code
        ("Prepare training code", https://cloud.google.com/vertex-ai/docs/training/code-requirements,
        "Environment variables for special Cloud Storage directories"), of the on-demand fallback
        once that ran. Checked with one Cloud Storage ``objects.list`` (prefix, maxResults=1).

        Raises:
            UsageError: the job had no base output directory (no ``output`` in the spec), or wrote
                nothing under ``model/``. NotFound / TargetError: reading the job or the bucket failed.
        """
        import urllib.parse

        conn = self._conn(handle.extra)
        job = self._get(conn, handle.extra.get("fallback_job") or handle.native_id)
        prefix = job.job_spec.base_output_directory.output_uri_prefix
        if not prefix:
            raise UsageError(f"Vertex custom job {job.display_name} wrote no model: it had no baseOutputDirectory "
                             "(give the spec an output: gs:// URI; its model/ is the job's AIP_MODEL_DIR)")
        model_dir = prefix.rstrip("/") + "/model/"
        bucket, _, path = model_dir[len("gs://"):].partition("/")
        r = conn.http("GET", f"{conn.storage_endpoint}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o",
                      params={"prefix": path, "maxResults": 1})
        if r.status_code != 200:
            raise TargetError(f"Cloud Storage refused listing {model_dir}: {r.status_code} {r.text[:200]}")
        if not r.json().get("items"):
            raise UsageError(f"Vertex custom job {job.display_name} wrote no model: nothing under {model_dir} "
                             "(the job's AIP_MODEL_DIR)")
        return model_dir

    def _job_names(self, handle: JobHandle) -> list[str]:
        return [handle.native_id] + ([handle.extra["fallback_job"]] if handle.extra.get("fallback_job") else [])

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        conn = self._conn(handle.extra)
        if handle.extra.get("kind") == "batch":
            from unijob_adapters.vertex import batch

            yield from batch.logs(conn, handle, follow=follow, poll=self.poll_interval, fmt=_format_entry)
            return
        seen: set[str] = set()
        last: dict[str, str] = {}
        while True:
            final = not follow
            if follow:
                st = self.status(handle)
                if st.handle_update:  # an on-demand fallback started: follow it too
                    handle = JobHandle.from_dict({**handle.to_dict(), "extra": {**handle.extra, **st.handle_update}})
                final = st.state.is_final
            for name in self._job_names(handle):
                job_id = name.rsplit("/", 1)[-1]
                for entry in conn.list_log_entries(job_id, after=last.get(job_id)):
                    key = entry.get("insertId") or json.dumps(entry, sort_keys=True)
                    if key in seen:
                        continue
                    seen.add(key)
                    if entry.get("timestamp"):
                        last[job_id] = entry["timestamp"]
                    yield _format_entry(entry)
            if final:
                return
            time.sleep(self.poll_interval)

    def cancel(self, handle: JobHandle) -> None:
        from google.api_core import exceptions as gexc

        conn = self._conn(handle.extra)
        if handle.extra.get("kind") == "batch":
            from unijob_adapters.vertex import batch

            return batch.cancel(conn, handle)
        for name in self._job_names(handle):
            if JobState(JOB_STATES.get(self._get(conn, name).state.name, "QUEUED")).is_final:
                continue  # cancelling a finished job is not an error

            def once(name: str = name) -> None:
                try:
                    conn.jobs.cancel_custom_job(name=name)
                except gexc.FailedPrecondition:  # finished meanwhile
                    pass

            conn.call(once)

    # ---- endpoints --------------------------------------------------------------------------

    def deploy(self, plan: Plan) -> EndpointHandle:
        from unijob_adapters.vertex import endpoints

        return endpoints.deploy(self._conn(plan.extra), plan)

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        from unijob_adapters.vertex import endpoints

        return endpoints.status(self._conn(handle.extra), handle)

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        from unijob_adapters.vertex import endpoints

        endpoints.set_traffic(self._conn(handle.extra), handle, split)

    def undeploy(self, handle: EndpointHandle) -> None:
        from unijob_adapters.vertex import endpoints

        endpoints.undeploy(self._conn(handle.extra), handle)

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        """``POST /v1/{endpoint}:predict`` with the ``{"instances": [...]}`` payload; ``variant``
        is a UsageError (Vertex has no per-request variant). See :mod:`.invoke`."""
        from unijob_adapters.vertex import invoke

        return invoke.invoke(self._conn(handle.extra), handle, payload, variant=variant, timeout=timeout)


def _format_entry(entry: Mapping[str, Any]) -> str:
    """``[workerpool0-0] message``: the replica (Vertex's ``ml.googleapis.com/task_name`` label)
    first, then the text or JSON message."""
    labels = entry.get("labels") or {}
    task = labels.get("ml.googleapis.com/task_name") or (entry.get("resource", {}).get("labels", {}).get("task_name")) \
        or "job"
    if "textPayload" in entry:
        text = entry["textPayload"]
    else:
        payload = entry.get("jsonPayload") or {}
        text = payload.get("message") if isinstance(payload.get("message"), str) else json.dumps(payload, sort_keys=True)
    return f"[{task}] {str(text).rstrip()}"
