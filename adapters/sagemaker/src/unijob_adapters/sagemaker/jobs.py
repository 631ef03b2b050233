"""Submit, watch and stop SageMaker training jobs (boto3), including the spot -> on-demand fallback.

State mapping (TrainingJobStatus / SecondaryStatus, from "DescribeTrainingJob", SageMaker API
Reference, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTrainingJob.html,
read 2026-11-21):

==========================================  ============
InProgress / Pending, Starting              QUEUED (waiting for instances; for spot, for capacity)
InProgress / LaunchingMLInstances,
PreparingTrainingStack, Downloading,
DownloadingTrainingImage                    STARTING
InProgress / Training, Uploading, Updating  RUNNING
InProgress / Interrupted, Restarting        RESTARTING (spot interruption or RetryStrategy retry)
Stopping                                    STOPPING
Completed                                   SUCCEEDED
Failed; Stopped / MaxRuntimeExceeded,
MaxWaitTimeExceeded                         FAILED
Stopped                                     CANCELLED
==========================================  ============

Restarts are counted from ``SecondaryStatusTransitions``: each ``Interrupted`` or ``Restarting``
entry, an ``Interrupted`` directly followed by ``Restarting`` counting once.
"""

from __future__ import annotations

from typing import Any, Optional

from unijob.contract import JobHandle, JobState, JobStatus, Plan
from unijob.errors import NotFound, UsageError

from . import sourcedir
from .client import already_exists, client, error_code, not_found, wrap

_SECONDARY: dict[str, JobState] = {
    "Pending": JobState.QUEUED,
    "Starting": JobState.QUEUED,
    "LaunchingMLInstances": JobState.STARTING,
    "PreparingTrainingStack": JobState.STARTING,
    "Downloading": JobState.STARTING,
    "DownloadingTrainingImage": JobState.STARTING,
    "Training": JobState.RUNNING,
    "Uploading": JobState.RUNNING,
    "Updating": JobState.RUNNING,
    "Interrupted": JobState.RESTARTING,
    "Restarting": JobState.RESTARTING,
    "Stopping": JobState.STOPPING,
}
_CAPACITY_WORDS = ("capacity", "insufficientinstance", "spot", "resourcelimitexceeded")


def _sm(handle_or_plan_extra: dict[str, Any], region: str):
    return client("sagemaker", region, retry_mode=handle_or_plan_extra.get("retry_mode", "standard"),
                  max_attempts=int(handle_or_plan_extra.get("max_attempts", 8)))


def _s3_split(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    return bucket, key


def upload(plan: Plan) -> None:
    """Upload the plan's ``sourcedir.tar.gz`` files (skipped when the content-addressed key exists).

    Raises:
        UsageError: the source changed since the plan was made (its sha256 differs).
        TargetError: S3 refused.
    """
    if not plan.uploads:
        return
    s3 = client("s3", plan.extra["region"], retry_mode=plan.extra.get("retry_mode", "standard"))
    for up in plan.uploads:
        if up.kind == "runtime-wheel":  # travels inside sourcedir.tar.gz
            continue
        blob = sourcedir.pack(up.source, plan.extra.get("requirements"), exclude=up.exclude)
        if up.sha256 and sourcedir.sha256(blob) != up.sha256:
            raise UsageError(f"{up.source} changed since the plan was made; plan again")
        bucket, key = _s3_split(up.destination)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue
        except Exception as e:  # botocore ClientError 404: upload below
            if "404" not in str(e) and "Not Found" not in str(e) and "NoSuchKey" not in str(e):
                raise wrap(e, f"checking {up.destination}") from None
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=blob, ContentType="application/gzip")
        except Exception as e:
            raise wrap(e, f"uploading {up.destination}") from None


def create(sm: Any, body: dict[str, Any]) -> None:
    """CreateTrainingJob unless a job of that name exists (idempotent)."""
    name = body["TrainingJobName"]
    try:
        sm.describe_training_job(TrainingJobName=name)
        return
    except Exception as e:
        if not not_found(e):
            raise wrap(e, f"describing {name}") from None
    try:
        sm.create_training_job(**body)
    except Exception as e:
        if already_exists(e):
            return
        raise wrap(e, f"creating training job {name}") from None


def dry_run(plan: Plan) -> None:
    """What ``submit`` would send, checked without sending: each CreateTrainingJob body against
    botocore's own model of the SageMaker API (the validation boto3 runs before a request), and
    each source bundle packed and compared with the plan's sha256. SageMaker has no dry-run
    parameter for CreateTrainingJob, so nothing is asked of the service.

    Raises:
        TargetError: a body the API model refuses. UsageError: the source changed since the plan.
    """
    import botocore.session
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    from unijob.errors import TargetError

    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape
    for r in plan.requests:
        if not r.api.endswith("CreateTrainingJob"):
            continue
        try:
            validate_parameters(r.body, shape)
        except ParamValidationError as e:
            raise TargetError(f"dry run: SageMaker would refuse CreateTrainingJob ({r.when}): {e}") from None
    for up in plan.uploads:
        if up.kind == "runtime-wheel":  # travels inside sourcedir.tar.gz
            continue
        blob = sourcedir.pack(up.source, plan.extra.get("requirements"), exclude=up.exclude)
        if up.sha256 and sourcedir.sha256(blob) != up.sha256:
            raise UsageError(f"{up.source} changed since the plan was made; plan again")


def submit(plan: Plan) -> JobHandle:
    """Upload, then create the plan's ``when="submit"`` job. Idempotent per submission.

    With ``plan.extra["dry_run"]``: :func:`dry_run`, nothing uploaded or created; the handle
    has ``extra["dry_run"]`` set."""
    region = plan.extra["region"]
    if plan.extra.get("dry_run"):
        dry_run(plan)
        name = plan.request("CreateTrainingJob", when="submit").body["TrainingJobName"]
        return JobHandle(target="sagemaker", native_id=name, name=name, submission_id=plan.submission_id,
                         extra={"region": region, "dry_run": True})
    upload(plan)
    sm = _sm(plan.extra, region)
    body = plan.request("CreateTrainingJob", when="submit").body
    create(sm, body)
    extra: dict[str, Any] = {"region": region, "retry_mode": plan.extra.get("retry_mode", "standard"),
                             "max_attempts": plan.extra.get("max_attempts", 8),
                             "poll_interval": plan.extra.get("poll_interval", 10.0)}
    try:
        fb = plan.request("CreateTrainingJob", when="fallback").body
        extra["fallback"] = fb
        extra["fallback_name"] = fb["TrainingJobName"]
    except KeyError:
        pass
    return JobHandle(target="sagemaker", native_id=body["TrainingJobName"], name=body["TrainingJobName"],
                     submission_id=plan.submission_id, extra=extra)


def active_name(handle: JobHandle) -> str:
    """The job currently reported: the fallback once it was submitted, else the first job."""
    return handle.extra.get("active") or handle.native_id


def describe(handle: JobHandle, name: Optional[str] = None) -> dict[str, Any]:
    sm = _sm(handle.extra, handle.extra["region"])
    name = name or active_name(handle)
    try:
        return sm.describe_training_job(TrainingJobName=name)
    except Exception as e:
        if not_found(e):
            raise NotFound(f"no SageMaker training job {name} in {handle.extra['region']}") from None
        raise wrap(e, f"describing {name}") from None


def count_restarts(transitions: list[dict[str, Any]]) -> int:
    """Interruptions and retries in ``SecondaryStatusTransitions`` (see the module docstring)."""
    n, prev = 0, None
    for t in transitions or []:
        s = t.get("Status")
        if s == "Interrupted" or (s == "Restarting" and prev != "Interrupted"):
            n += 1
        prev = s
    return n


def map_state(desc: dict[str, Any]) -> tuple[JobState, str]:
    """(state, message) for a DescribeTrainingJob answer."""
    st, sec = desc.get("TrainingJobStatus", ""), desc.get("SecondaryStatus", "")
    msg = desc.get("FailureReason", "") or ""
    if st == "Completed":
        return JobState.SUCCEEDED, msg
    if st == "Failed":
        return JobState.FAILED, msg or sec
    if st == "Stopped":
        if sec in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            return JobState.FAILED, msg or f"{sec}: the job hit its {'max_run' if sec == 'MaxRuntimeExceeded' else 'spot.max_wait'} limit"
        return JobState.CANCELLED, msg
    if st == "Stopping":
        return JobState.STOPPING, msg
    state = _SECONDARY.get(sec, JobState.QUEUED)
    trans = desc.get("SecondaryStatusTransitions") or []
    if trans and trans[-1].get("StatusMessage") and not msg:
        msg = trans[-1]["StatusMessage"]
    return state, msg


def _ts(v: Any) -> Optional[float]:
    return v.timestamp() if hasattr(v, "timestamp") else None


def needs_fallback(desc: dict[str, Any]) -> bool:
    """True when a spot attempt ended before training started for lack of capacity or of MaxWait."""
    if not desc.get("EnableManagedSpotTraining"):
        return False
    trained = any(t.get("Status") == "Training" for t in desc.get("SecondaryStatusTransitions") or [])
    if trained:
        return False
    st, sec = desc.get("TrainingJobStatus"), desc.get("SecondaryStatus")
    if sec == "MaxWaitTimeExceeded" and st in ("Stopped", "Failed"):
        return True
    reason = (desc.get("FailureReason") or "").lower().replace(" ", "")
    return st == "Failed" and any(w in reason for w in _CAPACITY_WORDS)


def status(handle: JobHandle) -> JobStatus:
    """The job's state; submits the on-demand fallback when :func:`needs_fallback` says so."""
    desc = describe(handle)
    update: dict[str, Any] = {}
    note = ""
    if "fallback" in handle.extra and not handle.extra.get("active") and needs_fallback(desc):
        fb = handle.extra["fallback"]
        sm = _sm(handle.extra, handle.extra["region"])
        create(sm, fb)
        update = {"active": fb["TrainingJobName"], "fallback_reason": desc.get("FailureReason") or desc.get("SecondaryStatus")}
        note = (f"spot attempt {handle.native_id} ended before training ({update['fallback_reason']}); "
                f"on-demand fallback {fb['TrainingJobName']} submitted")
        desc = describe(handle, fb["TrainingJobName"])
    state, msg = map_state(desc)
    if state == JobState.FAILED and not needs_fallback(desc):
        msg = _with_failure_tail(handle, desc.get("TrainingJobName") or active_name(handle), msg)
    return JobStatus(
        state=state,
        native_state=f"{desc.get('TrainingJobStatus', '')}/{desc.get('SecondaryStatus', '')}",
        message="; ".join(m for m in (note, msg) if m),
        restarts=count_restarts(desc.get("SecondaryStatusTransitions") or []),
        started_at=_ts(desc.get("TrainingStartTime")),
        ended_at=_ts(desc.get("TrainingEndTime")),
        handle_update=update,
    )


def _with_failure_tail(handle: JobHandle, name: str, msg: str) -> str:
    """``msg`` plus the failing host's last log lines (see :func:`.logs.failure_tail`); ``msg`` alone
    when the logs cannot be read."""
    from unijob.errors import UnijobError

    from . import logs

    try:
        host, lines = logs.failure_tail(handle, name)
    except UnijobError:  # no logs access (NotReady, TargetError): the status stands without them
        return msg
    if not lines:
        return msg
    return f"{msg}\nLast lines of {host} ({logs.LOG_GROUP}):\n" + "\n".join(lines)


def cancel(handle: JobHandle) -> None:
    """StopTrainingJob on the active job; a job that is already final or stopping is left alone."""
    sm = _sm(handle.extra, handle.extra["region"])
    name = active_name(handle)
    desc = describe(handle, name)
    if desc.get("TrainingJobStatus") != "InProgress":
        return
    try:
        sm.stop_training_job(TrainingJobName=name)
    except Exception as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code == "ValidationException":  # raced with completion or an earlier stop
            return
        raise wrap(e, f"stopping {name}") from None


def model_artifact(handle: JobHandle) -> str:
    """``ModelArtifacts.S3ModelArtifacts`` of the job (of its on-demand fallback once that ran):
    the ``model.tar.gz`` SageMaker uploads from ``/opt/ml/model`` ("DescribeTrainingJob", SageMaker
    API Reference, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTrainingJob.html).

    Raises:
        UsageError: the job reports no model artifacts, or the object is not in S3.
        NotFound / TargetError: describing the job or reading S3 failed.
    """
    desc = describe(handle)
    uri = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    name = desc.get("TrainingJobName", active_name(handle))
    if not uri:
        raise UsageError(f"SageMaker training job {name} wrote no model (no ModelArtifacts.S3ModelArtifacts)")
    bucket, key = _s3_split(uri)
    try:
        client("s3", handle.extra["region"]).head_object(Bucket=bucket, Key=key)
    except Exception as e:
        if not_found(e) or error_code(e) in ("404", "NoSuchKey", "NoSuchBucket"):
            raise UsageError(f"SageMaker training job {name} wrote no model: {uri} does not exist") from None
        raise wrap(e, f"reading {uri}") from None
    return uri
