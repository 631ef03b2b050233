"""The fake Vertex AI's batch prediction jobs (mixed into ``conftest.FakeVertex``).

``POST/GET v1/{parent}/batchPredictionJobs``, ``GET v1/{name}``, ``POST v1/{name}:cancel``, the
paths the ``aiplatform_v1`` JobServiceClient (REST transport) calls. Every body is parsed with
``aiplatform_v1.BatchPredictionJob`` (unknown fields refused), and every state the fake reports is
a ``JobState`` name. A created job is ``JOB_STATE_PENDING``; when :attr:`batch_runtime` is set it
then runs under Vertex's batch contract (:func:`unijob.testing.contracts.vertex_batch.run_batch`:
the Model's serving container, the input posted in ``batchSize`` requests) on a thread:
``JOB_STATE_RUNNING``, then ``JOB_STATE_SUCCEEDED`` (or FAILED, or CANCELLED after ``:cancel``,
through ``JOB_STATE_CANCELLING``), with ``outputInfo.gcsOutputDirectory``, ``completionStats``
and the output files in the fake's Cloud Storage (``objects``), and each container's lines in
Cloud Logging under ``aiplatform.googleapis.com/BatchPredictionJob``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Optional

from unijob.testing.httpfake import Request, Response

P = r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)"
FINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
         "JOB_STATE_PARTIALLY_SUCCEEDED"}
LOG_RESOURCE = "aiplatform.googleapis.com/BatchPredictionJob"
#: ``Model.supported_input_storage_formats`` / output formats of a custom-container Model.
INPUT_FORMATS = {"jsonl", "csv", "tf-record", "tf-record-gzip", "file-list", "bigquery"}


def _err(code: int, status: str, message: str) -> Response:
    return Response(code, {"error": {"code": code, "status": status, "message": message}})


def _now(t: Optional[float] = None) -> str:
    import datetime

    d = datetime.datetime.fromtimestamp(t or time.time(), datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeBatchPrediction:
    """Attributes:
        batch_jobs: name -> BatchPredictionJob REST JSON.
        batch_runtime: ``{"python", "program_dir", "workdir"}`` to run created jobs (the serving
            image's Python and working directory); None leaves them PENDING.
        batch_outcomes: name -> the :class:`~unijob.testing.contracts.vertex_batch.BatchOutcome`.
    """

    def batch_routes(self) -> None:
        r = self.route  # type: ignore[attr-defined]
        r("POST", P + r"/batchPredictionJobs", self.create_batch_job)
        r("GET", P + r"/batchPredictionJobs", self.list_batch_jobs)
        r("GET", P + r"/batchPredictionJobs/(?P<id>\d+)", self.get_batch_job)
        r("POST", P + r"/batchPredictionJobs/(?P<id>\d+):cancel", self.cancel_batch_job)

    def batch_reset(self) -> None:
        """Cancel and wait for the running jobs, then forget every batch job."""
        for event, thread in getattr(self, "_batch_threads", {}).values():
            event.set()
            thread.join(120)
        self.batch_jobs: dict[str, dict] = {}
        self.batch_outcomes: dict[str, Any] = {}
        self._batch_threads: dict[str, tuple[threading.Event, threading.Thread]] = {}
        self.batch_runtime: Optional[dict[str, Any]] = None

    # ---- routes -------------------------------------------------------------------------------

    def create_batch_job(self, req: Request) -> Response:
        job = self.parse(self.aip.BatchPredictionJob, req)  # type: ignore[attr-defined]
        parent = f"projects/{req.params['p']}/locations/{req.params['l']}"
        problem = self._check_batch(job, parent)
        if problem:
            return _err(400, "INVALID_ARGUMENT", problem)
        if job.model.split("@")[0] not in self.models:  # type: ignore[attr-defined]
            return _err(404, "NOT_FOUND", f"Model {job.model} not found")
        job.name = f"{parent}/batchPredictionJobs/{next(self._ids)}"  # type: ignore[attr-defined]
        job.state = self.aip.JobState.JOB_STATE_PENDING  # type: ignore[attr-defined]
        body = self.dump(job)  # type: ignore[attr-defined]
        body["createTime"] = body["updateTime"] = _now()
        self.batch_jobs[job.name] = body
        if self.batch_runtime is not None:
            event = threading.Event()
            thread = threading.Thread(target=self._run, args=(job.name, event), daemon=True)
            self._batch_threads[job.name] = (event, thread)
            thread.start()
        return Response(200, body)

    def _check_batch(self, job: Any, parent: str) -> Optional[str]:
        """What Vertex refuses at create (field docs of BatchPredictionJob and its parts)."""
        if not job.display_name:
            return "displayName is required"
        if not job.model.startswith(parent + "/models/"):
            return f"model must be a Model of {parent}"
        ic, oc = job.input_config, job.output_config
        if ic.instances_format not in INPUT_FORMATS:
            return f"inputConfig.instancesFormat {ic.instances_format!r} is not supported"
        if not ic.gcs_source.uris or any(not u.startswith("gs://") for u in ic.gcs_source.uris):
            return "inputConfig.gcsSource.uris must be gs:// URIs"
        if oc.predictions_format != "jsonl" or not oc.gcs_destination.output_uri_prefix.startswith("gs://"):
            return "outputConfig needs predictionsFormat jsonl and a gs:// gcsDestination.outputUriPrefix"
        dr = job.dedicated_resources
        if not dr.machine_spec.machine_type:
            return "dedicatedResources.machineSpec.machineType is required"
        if dr.starting_replica_count > (dr.max_replica_count or 10):
            return "dedicatedResources.startingReplicaCount must be <= maxReplicaCount"
        return self._check_labels(dict(job.labels))  # type: ignore[attr-defined]

    def list_batch_jobs(self, req: Request) -> Response:
        import re

        flt = req.arg("filter") or ""
        conds = dict(re.findall(r'([\w.]+)="([^"]*)"', flt))
        if re.sub(r'([\w.]+)="([^"]*)"|\bAND\b|\s', "", flt):
            return _err(400, "INVALID_ARGUMENT", f"unsupported filter {flt!r}")
        prefix = f"projects/{req.params['p']}/locations/{req.params['l']}/"
        out = [j for n, j in self.batch_jobs.items() if n.startswith(prefix) and all(
            (j.get("displayName") == v) if k == "display_name" else
            (j.get("labels", {}).get(k[len("labels."):]) == v) if k.startswith("labels.") else False
            for k, v in conds.items())]
        return Response(200, {"batchPredictionJobs": out} if out else {})

    def get_batch_job(self, req: Request) -> Response:
        name = req.path[len("/v1/"):]
        return Response(200, self.batch_jobs[name]) if name in self.batch_jobs else _err(404, "NOT_FOUND", name)

    def cancel_batch_job(self, req: Request) -> Response:
        name = req.path[len("/v1/"):-len(":cancel")]
        job = self.batch_jobs.get(name)
        if job is None:
            return _err(404, "NOT_FOUND", name)
        if job["state"] in FINAL:
            return _err(400, "FAILED_PRECONDITION", "the job is already finished")
        running = self._batch_threads.get(name)
        if running and running[1].is_alive():
            self.set_batch_state(name, "JOB_STATE_CANCELLING")
            running[0].set()
        else:
            self.set_batch_state(name, "JOB_STATE_CANCELLED")
        return Response(200, {})

    # ---- state --------------------------------------------------------------------------------

    def set_batch_state(self, name: str, state: str, **fields: Any) -> None:
        """Move a job; ``fields`` (REST JSON) are merged in, and the result must parse as a
        BatchPredictionJob (so a state that is not a ``JobState`` name fails here); it is kept as
        the API would answer it (fields at their default left out)."""
        with self.lock:  # type: ignore[attr-defined]
            job = {**self.batch_jobs[name], "state": state, **fields, "updateTime": _now()}
            if state == "JOB_STATE_RUNNING":
                job.setdefault("startTime", _now())
            if state in FINAL:
                job["endTime"] = _now()
            parsed = self.aip.BatchPredictionJob.from_json(json.dumps(job), ignore_unknown_fields=False)  # type: ignore[attr-defined]
            self.batch_jobs[name] = self.dump(parsed)  # type: ignore[attr-defined]

    def add_batch_log(self, name: str, task: str, text: str) -> None:
        job_id = name.rsplit("/", 1)[-1]
        with self.lock:  # type: ignore[attr-defined]
            entries = self.logs.setdefault(job_id, [])  # type: ignore[attr-defined]
            entries.append({"insertId": f"{job_id}-{len(entries)}", "timestamp": _now(), "textPayload": text,
                            "resource": {"type": LOG_RESOURCE, "labels": {"job_id": job_id}},
                            "labels": {"ml.googleapis.com/task_name": task}})

    def _run(self, name: str, cancel: threading.Event) -> None:
        from unijob.testing.contracts.vertex_batch import run_batch

        rt = self.batch_runtime or {}
        job = self.batch_jobs[name]
        model = self.models[job["model"].split("@")[0]]  # type: ignore[attr-defined]
        job_id = name.rsplit("/", 1)[-1]
        self.set_batch_state(name, "JOB_STATE_RUNNING")
        with self.lock:  # type: ignore[attr-defined]
            objects = dict(self.objects)  # type: ignore[attr-defined]
        try:
            out = run_batch(job, model, python=rt["python"], program_dir=rt["program_dir"],
                            workdir=Path(rt["workdir"]) / job_id, objects=objects, job_id=job_id,
                            cancel=cancel, timeout=rt.get("timeout", 600.0),
                            on_line=lambda task, text: self.add_batch_log(name, task, text))
        except Exception as e:  # noqa: BLE001 - a fake's bug or a timeout: the job fails with it
            self.set_batch_state(name, "JOB_STATE_FAILED", error={"code": 13, "message": f"{type(e).__name__}: {e}"})
            return
        self.batch_outcomes[name] = out
        with self.lock:  # type: ignore[attr-defined]
            self.objects.update(out.files)  # type: ignore[attr-defined]
        fields: dict[str, Any] = {
            "outputInfo": {"gcsOutputDirectory": out.output_dir},
            "completionStats": {"successfulCount": str(out.successful), "failedCount": str(out.failed),
                                "incompleteCount": str(out.incomplete)}}
        if out.error:
            fields["error"] = {"code": 13 if out.state == "JOB_STATE_FAILED" else 10, "message": out.error}
        self.set_batch_state(name, out.state, **fields)
