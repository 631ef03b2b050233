"""Batch prediction on Vertex AI: ``models:upload`` (the serving container and the artifact) then a
``BatchPredictionJob`` reading JSON Lines from Cloud Storage; its status, logs and cancel.

Body (``google.cloud.aiplatform.v1.BatchPredictionJob``, checked by the ``aiplatform_v1`` types;
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.batchPredictionJobs,
read 2026-11-29): ``inputConfig`` (``instancesFormat: jsonl``, ``gcsSource.uris``),
``outputConfig`` (``predictionsFormat: jsonl``, ``gcsDestination.outputUriPrefix``),
``dedicatedResources`` (machine spec, ``startingReplicaCount`` = ``maxReplicaCount`` =
``batch.replicas``), ``manualBatchTuningParameters.batchSize`` = ``batch.instances_per_request``
and ``modelParameters`` = ``batch.parameters``. Calls (REST, JobService):
``POST v1/{parent}/batchPredictionJobs``, ``GET v1/{name}``, ``POST v1/{name}:cancel``.

How Vertex runs it (the contract :mod:`unijob.testing.contracts.vertex` runs here): it starts
``replicas`` containers of the Model's serving container (``AIP_HTTP_PORT``,
``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE``, ``AIP_STORAGE_URI``: Vertex's copy of
``artifactUri``), waits for the health route, and posts the input lines, ``batchSize`` at a time,
as ``{"instances": [...], "parameters": modelParameters}``; each line is sent *as it is* (no
``instanceConfig``). ``unijob.serve`` answers ``{"predictions": [...]}``.

**What Vertex writes is Vertex's format, not unijob's.** Under ``outputUriPrefix`` it creates
``prediction-<model display name>-<create time>/`` holding ``predictions_00001.jsonl``... (lines
``{"instance": X, "prediction": P}``) and, when instances failed, ``errors_00001.jsonl``... (the
instance followed by ``"error": {"code", "message"}``) (``BatchPredictionJob.OutputConfig
.gcs_destination`` field docs; the 5-digit file numbers are those real jobs write). The lines are
sharded across files and not in input order, and a unijob keyed line ``{"key": K, "instance": X}``
reaches the container whole (Vertex's ``instanceConfig.keyField`` would drop the key but still
send an object). So on Vertex there is no ``<file>.out`` in input order: match a prediction to its
input by its ``instance``. unijob reads ``outputInfo.gcsOutputDirectory`` and ``completionStats``
and says where the files are (:func:`status`).

Error budget: Vertex writes failed instances to ``errors_*.jsonl`` and can still report
``JOB_STATE_SUCCEEDED``; :func:`status` applies ``batch.max_error_fraction`` to
``completionStats`` (failed / (successful + failed + incomplete)) and reports FAILED past it,
keeping Vertex's own state as ``native_state``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator

from unijob.contract import JobHandle, JobState, JobStatus, NativeRequest, Plan, PlanResources
from unijob.errors import NotFound, SpecError, TargetError

from unijob_adapters.vertex import machines
from unijob_adapters.vertex.options import VertexOptions
from unijob_adapters.vertex.plan import SUBMISSION_LABEL, TARGET, resolve_where
from unijob_adapters.vertex.tables import JOB_STATES
from unijob_adapters.vertex.validate import rest_json


def _ident(text: str, limit: int = 63) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower())[:limit].strip("-")


def plan_batch(spec: Any, submission_id: str, opts: VertexOptions) -> Plan:
    """models:upload + batchPredictionJobs.create for ``spec.batch`` (pure).

    Raises:
        SpecError: model, input or output not in Cloud Storage; a handler batch without
            ``targets.vertex.serving_image``; an accelerator Vertex lacks.
    """
    from unijob.serve.config import DEFAULT_PORT

    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    for field in ("model", "input", "output"):
        value = getattr(b, field) or ""
        if not value.startswith("gs://"):
            raise SpecError.at(("batch", field), f"Vertex batch prediction reads and writes Cloud Storage (gs://...); got '{value}'")
    project, location = resolve_where(opts)
    parent = f"projects/{project}/locations/{location}"
    env = dict(spec.env)
    container: dict[str, Any] = {}
    if b.image:
        container["image_uri"] = b.image
    elif opts.serving_image:
        env["UNIJOB_HANDLER"] = b.handler
        container.update(image_uri=opts.serving_image, ports=[{"container_port": DEFAULT_PORT}])
    else:
        raise SpecError.at(("batch", "handler"), "a Vertex model needs a serving container: set targets.vertex.serving_image "
                                                 "(the unijob serving image, `unijob serve-image`) or give batch.image")
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    digest = hashlib.sha256(json.dumps([b.model, container], sort_keys=True).encode()).hexdigest()[:8]
    model_id = _ident(f"{spec.name}-batch-{digest}")
    model_name = f"{parent}/models/{model_id}"
    labels = {"unijob-batch": _ident(spec.name), **dict(spec.labels)}
    upload = rest_json("UploadModelRequest", {"parent": parent, "model_id": model_id, "model": {
        "display_name": model_id, "artifact_uri": b.model, "container_spec": container, "labels": labels}})
    upload.pop("parent", None)
    machine = machines.choose(b.accelerator, b.instance_type, loc=("batch",))
    name = _ident(f"{spec.name}-{hashlib.sha256(submission_id.encode()).hexdigest()[:8]}")
    job = {
        "display_name": name, "model": model_name, "labels": {**labels, SUBMISSION_LABEL: name},
        "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [b.input]}},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": b.output}},
        "dedicated_resources": {"machine_spec": machine.spec(), "starting_replica_count": b.replicas,
                                "max_replica_count": b.replicas},
        "manual_batch_tuning_parameters": {"batch_size": b.instances_per_request},
    }
    if opts.service_account:
        job["service_account"] = opts.service_account
    body = rest_json("BatchPredictionJob", job)
    if b.parameters:  # a google.protobuf.Value: its REST JSON is the JSON value itself
        body["modelParameters"] = dict(b.parameters)
    return Plan(
        target=TARGET, kind="batch", name=name, submission_id=submission_id,
        requests=[NativeRequest(api=f"POST /v1/{parent}/models:upload", body=upload, note=f"model {model_id}"),
                  NativeRequest(api=f"POST /v1/{parent}/batchPredictionJobs", body=body,
                                note=f"{b.replicas} x {machine.machine_type}, JSON Lines, batch size {b.instances_per_request}")],
        resources=PlanResources(service="vertex-prediction", region=location, instance_type=machine.machine_type,
                                instance_count=b.replicas, accelerator=machine.accelerator,
                                accelerators_per_node=machine.accelerator_count, hours=spec.expected_seconds / 3600.0),
        notes=["the error budget (batch.max_error_fraction) is unijob's: Vertex writes failed instances to "
               "errors_*.jsonl and unijob's status fails the job past the budget (completionStats)",
               "Vertex writes its own output format: prediction-<model>-<time>/predictions_*.jsonl lines "
               "{instance, prediction}, not in input order (no unijob <file>.out)"],
        extra={"project": project, "location": location, "kind": "batch", "model": model_name,
               "max_error_fraction": b.max_error_fraction, "api_endpoint": opts.api_endpoint,
               "logging_endpoint": opts.logging_endpoint, "storage_endpoint": opts.storage_endpoint},
    )


# ---- calls ------------------------------------------------------------------------------------

#: Cloud Logging resource type of a batch prediction job's container logs (the Vertex AI monitored
#: resources list ``aiplatform.googleapis.com/BatchPredictionJob``; its ``job_id`` label is the
#: job's numeric id).
LOG_RESOURCE = "aiplatform.googleapis.com/BatchPredictionJob"
_CONN_KEYS = ("project", "location", "api_endpoint", "logging_endpoint", "storage_endpoint")


def _bodies(plan: Plan) -> tuple[Any, Any]:
    """(UploadModelRequest, BatchPredictionJob) parsed by the aiplatform_v1 types, unknown fields refused."""
    from google.cloud import aiplatform_v1 as aip

    upload = next(r for r in plan.requests if r.api.endswith("models:upload"))
    job = next(r for r in plan.requests if r.api.endswith("/batchPredictionJobs"))
    up = aip.UploadModelRequest.from_json(json.dumps(upload.body), ignore_unknown_fields=False)
    up.parent = f"projects/{plan.extra['project']}/locations/{plan.extra['location']}"
    return up, aip.BatchPredictionJob.from_json(json.dumps(job.body), ignore_unknown_fields=False)


def submit(conn: Any, plan: Plan) -> JobHandle:
    """Upload the Model unless it exists, then find or create the BatchPredictionJob (the list by
    display name and submission label, and the create, retried together: idempotent per
    submission). With ``plan.extra["dry_run"]`` only the bodies are parsed; nothing is sent.

    Raises:
        TargetError: a body the Vertex types refuse (dry run), or the API refused.
    """
    from google.api_core import exceptions as gexc

    try:
        up, job = _bodies(plan)
    except Exception as e:  # json_format ParseError: the body does not fit the type
        raise TargetError(f"Vertex AI would refuse the batch prediction: {e}") from None
    if plan.extra.get("dry_run"):
        return JobHandle(target=TARGET, native_id="", name=plan.name, submission_id=plan.submission_id,
                         extra={"dry_run": True, "kind": "batch"})
    try:
        conn.call(lambda: conn.models.get_model(name=job.model))
    except gexc.NotFound:
        conn.call(lambda: conn.models.upload_model(request=up, retry=conn.retry).result(polling=conn.polling()))
    flt = f'display_name="{job.display_name}" AND labels.{SUBMISSION_LABEL}="{job.labels[SUBMISSION_LABEL]}"'

    def once() -> Any:
        for found in conn.jobs.list_batch_prediction_jobs(request={"parent": conn.parent, "filter": flt}):
            return found
        return conn.jobs.create_batch_prediction_job(parent=conn.parent, batch_prediction_job=job)

    created = conn.call(once)
    extra = {k: plan.extra.get(k) for k in _CONN_KEYS}
    extra.update(kind="batch", max_error_fraction=plan.extra.get("max_error_fraction", 0.0))
    return JobHandle(target=TARGET, native_id=created.name, name=plan.name, submission_id=plan.submission_id,
                     extra=extra)


def _get(conn: Any, name: str) -> Any:
    from google.api_core import exceptions as gexc

    try:
        return conn.call(lambda: conn.jobs.get_batch_prediction_job(name=name))
    except gexc.NotFound:
        raise NotFound(f"Vertex has no batch prediction job {name}") from None


def status(conn: Any, handle: JobHandle) -> JobStatus:
    """The job's state (Vertex ``JobState``, mapped as for custom jobs), with the error budget
    applied to ``completionStats`` and the output directory in the message."""
    job = _get(conn, handle.native_id)
    native = job.state.name
    state = JobState(JOB_STATES.get(native, "QUEUED"))
    parts: list[str] = []
    stats = job.completion_stats
    ok, failed, incomplete = int(stats.successful_count), int(stats.failed_count), max(0, int(stats.incomplete_count))
    total = ok + failed + incomplete
    out_dir = job.output_info.gcs_output_directory
    if native in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED") and total:
        budget = float(handle.extra.get("max_error_fraction") or 0.0)
        bad = failed + incomplete
        if bad / total > budget:
            state = JobState.FAILED
            parts.append(f"{bad} of {total} instances failed ({bad / total:.2%} > the error budget {budget:.2%}); "
                         f"see {out_dir}/errors_*.jsonl")
        else:
            state = JobState.SUCCEEDED
    if total:
        parts.append(f"{ok} predictions, {failed} errors" + (f", {incomplete} not processed" if incomplete else ""))
    if out_dir:
        parts.append(f"output {out_dir}/ (Vertex's format: predictions_*.jsonl lines {{instance, prediction}}, "
                     "errors_*.jsonl)")
    if job.error and job.error.code:
        parts.append(job.error.message)
    return JobStatus(state=state, native_state=native, message="; ".join(parts),
                     started_at=job.start_time.timestamp() if job.start_time else None,
                     ended_at=job.end_time.timestamp() if job.end_time else None)


def cancel(conn: Any, handle: JobHandle) -> None:
    """``batchPredictionJobs.cancel``; a finished job is left as it is (not an error)."""
    from google.api_core import exceptions as gexc

    if JobState(JOB_STATES.get(_get(conn, handle.native_id).state.name, "QUEUED")).is_final:
        return

    def once() -> None:
        try:
            conn.jobs.cancel_batch_prediction_job(name=handle.native_id)
        except gexc.FailedPrecondition:  # finished meanwhile
            pass

    conn.call(once)


def logs(conn: Any, handle: JobHandle, *, follow: bool, poll: float, fmt: Any) -> Iterator[str]:
    """The job's container logs from Cloud Logging (:data:`LOG_RESOURCE`), oldest first; with
    ``follow`` until the job is final."""
    import time

    job_id = handle.native_id.rsplit("/", 1)[-1]
    seen: set[str] = set()
    last = None
    while True:
        final = not follow or status(conn, handle).state.is_final
        for entry in conn.list_log_entries(job_id, after=last, resource_type=LOG_RESOURCE):
            key = entry.get("insertId") or json.dumps(entry, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            last = entry.get("timestamp") or last
            yield fmt(entry)
        if final:
            return
        time.sleep(poll)
