"""Talking to a workspace: the SDK client (its own auth chain), uploads, runs, logs.

Authentication is the SDK's unified chain (https://docs.databricks.com/en/dev-tools/auth.html):
``DATABRICKS_HOST`` + ``DATABRICKS_TOKEN``, OAuth client credentials, a ``~/.databrickscfg``
profile, Azure CLI... unijob never reads, prints or stores a token.

Run states (Jobs API 2.2 ``RunLifeCycleState`` / ``RunResultState``) onto unijob's:

=======================================  ===========
QUEUED, PENDING, BLOCKED                 QUEUED
RUNNING                                  RUNNING
WAITING_FOR_RETRY                        RESTARTING
TERMINATING                              STOPPING
TERMINATED + SUCCESS/SUCCESS_WITH_FAIL.  SUCCEEDED
TERMINATED + CANCELED/UPSTREAM_CANCELED  CANCELLED
TERMINATED + anything else, INTERNAL_ERROR, SKIPPED   FAILED
=======================================  ===========
"""

from __future__ import annotations

import configparser
import io
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from unijob.contract import JobState, JobStatus, Plan, Upload
from unijob.errors import NotFound, NotReady, SpecError, TargetError, UsageError

from .plan import LAUNCHER_NAME

HOST_LOC = ("targets", "databricks", "host")
_LIFECYCLE = {"QUEUED": JobState.QUEUED, "PENDING": JobState.QUEUED, "BLOCKED": JobState.QUEUED,
              "RUNNING": JobState.RUNNING, "WAITING_FOR_RETRY": JobState.RESTARTING,
              "TERMINATING": JobState.STOPPING}
_SUCCESS = {"SUCCESS", "SUCCESS_WITH_FAILURES"}
_CANCELLED = {"CANCELED", "UPSTREAM_CANCELED"}


def profile_settings(profile: Optional[str]) -> dict[str, str]:
    """The non-secret keys (``host``, ``auth_type``, and whether credentials are present) of a
    ``~/.databrickscfg`` profile (``DATABRICKS_CONFIG_FILE`` overrides the path); empty if none."""
    path = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    name = profile or os.environ.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"
    cp = configparser.ConfigParser()
    try:
        cp.read(path)
    except (configparser.Error, OSError):
        return {}
    if name != "DEFAULT" and not cp.has_section(name):
        return {}
    sect = cp[name] if name != "DEFAULT" else cp.defaults()
    out = {k: sect[k] for k in ("host", "auth_type") if sect.get(k)}
    if any(sect.get(k) for k in ("token", "client_secret", "azure_client_secret", "password")) or sect.get("auth_type"):
        out["credentials"] = "yes"
    return out


def resolve_host(host: Optional[str], profile: Optional[str]) -> Optional[str]:
    """The workspace host submit will use: the option, ``DATABRICKS_HOST``, or the profile's."""
    return host or os.environ.get("DATABRICKS_HOST") or profile_settings(profile).get("host")


def cloud_of_host(host: Optional[str]) -> Optional[str]:
    """The cloud a workspace URL belongs to, from Databricks' domains (``*.cloud.databricks.com``
    AWS, ``*.azuredatabricks.net`` Azure, ``*.gcp.databricks.com`` GCP), or ``None``."""
    h = (host or "").lower()
    if ".azuredatabricks.net" in h:
        return "azure"
    if ".gcp.databricks.com" in h:
        return "gcp"
    if ".cloud.databricks.com" in h:
        return "aws"
    return None


def check_cloud(host: Optional[str], profile: Optional[str], cloud: Optional[str]) -> None:
    """Raises SpecError at ``targets.databricks.cloud`` when the workspace host is on another cloud
    than the plan's node types and spot spelling were built for (nothing is sent then)."""
    actual = cloud_of_host(resolve_host(host, profile))
    if actual and cloud and actual != cloud:
        raise SpecError.at(("targets", "databricks", "cloud"),
                           f"the workspace is on {actual} but the plan was built for {cloud}; "
                           f"set targets.databricks.cloud: {actual}", suggestion=actual)


def workspace_client(host: Optional[str], profile: Optional[str], retry_timeout_seconds: Optional[int] = None,
                     http_timeout_seconds: Optional[float] = None):
    """A ``databricks.sdk.WorkspaceClient`` through the SDK's auth chain.

    ``retry_timeout_seconds``: the SDK's total budget for retrying 429/503 and timeouts (its
    default 300 s); ``http_timeout_seconds``: per HTTP request (its default 60 s).

    Raises:
        SpecError: no workspace host anywhere (exit 2, nothing sent).
        NotReady: the SDK is missing or finds no credentials.
    """
    try:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config
    except ImportError:
        raise NotReady("databricks-sdk is not installed", hint="pip install 'unijob[databricks]'") from None
    if not resolve_host(host, profile):
        raise SpecError.at(HOST_LOC, "no Databricks workspace host: set targets.databricks.host, "
                                     "DATABRICKS_HOST, or a host in a ~/.databrickscfg profile")
    kwargs: dict[str, Any] = {}
    if host:
        kwargs["host"] = host
    if profile:
        kwargs["profile"] = profile
    if retry_timeout_seconds:
        kwargs["retry_timeout_seconds"] = retry_timeout_seconds
    if http_timeout_seconds:
        kwargs["http_timeout_seconds"] = http_timeout_seconds
    try:
        cfg = Config(**kwargs)
    except ValueError as e:
        first = str(e).split(". Config:")[0].split(",")[0]
        raise NotReady(f"Databricks authentication failed: {first}",
                       hint="set DATABRICKS_TOKEN (or OAuth DATABRICKS_CLIENT_ID/SECRET) or use a profile") from None
    return WorkspaceClient(config=cfg)


def _target_error(e: Exception, what: str) -> TargetError:
    code = getattr(e, "error_code", None) or type(e).__name__
    return TargetError(f"Databricks refused {what}: {code}: {getattr(e, 'message', None) or e}")


# ---- uploads ------------------------------------------------------------------------------------

def _put(w, path: str, data: bytes) -> None:
    if path.startswith("/Volumes/"):
        w.files.upload(path, io.BytesIO(data), overwrite=True)
    else:
        from databricks.sdk.service.workspace import ImportFormat

        w.workspace.upload(path, data, format=ImportFormat.AUTO, overwrite=True)


def _mkdirs(w, path: str) -> None:
    if path.startswith("/Volumes/"):
        w.files.create_directory(path)
    else:
        w.workspace.mkdirs(path)


def upload(w, up: Upload) -> list[str]:
    """Upload one plan :class:`Upload` (a directory file by file, or one file); returns the paths written."""
    src = Path(up.source)
    written = []
    if up.kind == "runtime-wheel":  # built again from the installed unijob: the same bytes as planned
        from unijob.bundle import runtime_wheel

        wheel = runtime_wheel(["databricks"])
        if wheel.filename != up.source:  # a batch run's wheel also carries unijob.batch.runner
            wheel = runtime_wheel(["databricks"], batch=True)
        if (wheel.filename, wheel.sha256) != (up.source, up.sha256):
            raise TargetError(f"the runtime wheel changed since the plan ({up.source} -> {wheel.filename}); plan again")
        _mkdirs(w, up.destination.rsplit("/", 1)[0])
        _put(w, up.destination, wheel.data)
        return [up.destination]
    if up.kind == "directory":
        dirs = {up.destination}
        from unijob.bundle import iter_source_files

        files = iter_source_files(src, up.exclude)
        for rel, _ in files:
            parent = f"{up.destination}/{rel}".rsplit("/", 1)[0]
            dirs.add(parent)
        for d in sorted(dirs):
            _mkdirs(w, d)
        for rel, p in files:
            if rel == LAUNCHER_NAME:
                continue
            _put(w, f"{up.destination}/{rel}", p.read_bytes())
            written.append(f"{up.destination}/{rel}")
    else:
        _mkdirs(w, up.destination.rsplit("/", 1)[0])
        _put(w, up.destination, src.read_bytes())
        written.append(up.destination)
    return written


# ---- runs ---------------------------------------------------------------------------------------

def submit(w, plan: Plan) -> int:
    """Uploads, then ``runs/submit`` with the plan's body (its ``idempotency_token`` makes a retry
    return the first run's id). Returns the run id.

    Raises:
        TargetError: the workspace refused an upload or the run.
    """
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service import jobs

    from .plan import check_submit_body

    body = plan.request("/jobs/runs/submit").body
    try:
        check_submit_body(body, real=True)  # the plan checked it with the cached stand-ins
    except ValueError as e:
        raise UsageError(f"the plan's runs/submit body does not fit databricks-sdk: {e}") from None
    try:
        for up in plan.uploads:
            upload(w, up)
    except DatabricksError as e:
        raise _target_error(e, "the upload") from None
    try:
        wait = w.jobs.submit(run_name=body["run_name"], idempotency_token=body["idempotency_token"],
                             timeout_seconds=body.get("timeout_seconds"),
                             tasks=[jobs.SubmitTask.from_dict(t) for t in body["tasks"]])
    except DatabricksError as e:
        raise _target_error(e, "the run") from None
    return int(wait.run_id)


def _get_run(w, run_id: int):
    from databricks.sdk.errors import DatabricksError, NotFound as SdkNotFound

    try:
        return w.jobs.get_run(run_id)
    except SdkNotFound:
        raise NotFound(f"no Databricks run {run_id}") from None
    except DatabricksError as e:
        raise _target_error(e, "runs/get") from None


def status(w, run_id: int) -> JobStatus:
    run = _get_run(w, run_id)
    st = run.state
    life = st.life_cycle_state.value if st and st.life_cycle_state else "PENDING"
    result = st.result_state.value if st and st.result_state else ""
    if life in _LIFECYCLE:
        state = _LIFECYCLE[life]
    elif life == "TERMINATED" and result in _SUCCESS:
        state = JobState.SUCCEEDED
    elif life == "TERMINATED" and result in _CANCELLED:
        state = JobState.CANCELLED
    else:  # TERMINATED with FAILED/TIMEDOUT/..., INTERNAL_ERROR, SKIPPED
        state = JobState.FAILED
    attempts = max((t.attempt_number or 0 for t in (run.tasks or [])), default=0)
    message = (st.state_message or "") if st else ""
    if state == JobState.FAILED:
        message = "\n".join(x for x in (message, _failure_tail(w, run)) if x)
    return JobStatus(state=state, native_state=f"{life}/{result}" if result else life,
                     message=message, restarts=attempts,
                     started_at=run.start_time / 1000 if run.start_time else None,
                     ended_at=run.end_time / 1000 if run.end_time else None)


def _failure_tail(w, run: Any, lines: int = 20) -> str:
    """A failed task's ``error`` and the last ``lines`` of its output (``runs/get-output``), so
    ``unijob status`` shows why it failed, as on the local target; "" when there is none."""
    from databricks.sdk.errors import DatabricksError

    for t in run.tasks or []:
        try:
            out = w.jobs.get_run_output(t.run_id)
        except DatabricksError:
            continue
        tail = (out.logs or "").rstrip().splitlines()[-lines:]
        parts = [f"task {t.task_key}: {out.error}" if out.error else ""]
        if tail:
            parts.append("last lines:\n" + "\n".join(tail))
        text = "\n".join(p for p in parts if p)
        if text:
            return text
    return ""


def output_lines(w, run_id: int, cluster_log_dir: Optional[str]) -> Iterator[str]:
    """The task's ``runs/get-output`` (logs, error, trace), then the driver's stdout/stderr from a
    volume ``cluster_log_dir`` where one was set, each line prefixed with its source."""
    from databricks.sdk.errors import DatabricksError

    run = _get_run(w, run_id)
    for t in run.tasks or []:
        try:
            out = w.jobs.get_run_output(t.run_id)
        except DatabricksError as e:
            yield f"[databricks] no output for task {t.task_key}: {getattr(e, 'message', e)}"
            continue
        for line in (out.logs or "").splitlines():
            yield f"[driver] {line}"
        if out.logs_truncated:
            yield "[databricks] output truncated by Databricks (5 MB limit)"
        if out.error:
            yield f"[databricks] error: {out.error}"
        for line in (out.error_trace or "").splitlines():
            yield f"[driver] {line}"
        cluster = t.cluster_instance.cluster_id if t.cluster_instance else None
        if cluster and cluster_log_dir and cluster_log_dir.startswith("/Volumes/"):
            for stream in ("stdout", "stderr"):
                path = f"{cluster_log_dir.rstrip('/')}/{cluster}/driver/{stream}"
                try:
                    data = w.files.download(path).contents.read()
                except DatabricksError:
                    continue
                for line in data.decode("utf-8", "replace").splitlines():
                    yield f"[driver {stream}] {line}"


def cancel(w, run_id: int) -> None:
    """``runs/cancel``; a finished run is left as it is."""
    from databricks.sdk.errors import DatabricksError, NotFound as SdkNotFound

    try:
        w.jobs.cancel_run(run_id)
    except SdkNotFound:
        raise NotFound(f"no Databricks run {run_id}") from None
    except DatabricksError as e:
        if status(w, run_id).state.is_final:
            return
        raise _target_error(e, "runs/cancel") from None
