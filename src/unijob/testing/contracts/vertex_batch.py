"""Vertex AI's batch prediction contract, run on this machine: a ``BatchPredictionJob``'s Model (its
serving container) started ``startingReplicaCount`` times the way Vertex starts a prediction
container, and the JSON Lines input posted to it ``batchSize`` instances at a time, with no Docker
and no network. The CustomJob contract is :mod:`unijob.testing.contracts.vertex`.

- The container's ``command``/``args`` (else the image's ENTRYPOINT: :data:`SERVING_ENTRYPOINT`,
  the unijob serving image's) and ``env``, run in ``program_dir`` (the image's WORKDIR, holding
  the handler's code) with the serving image's Python first on ``PATH``; and the ``AIP_*``
  variables of "Custom container requirements for prediction" [1]: ``AIP_HTTP_PORT``,
  ``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE`` (the ModelContainerSpec's routes, else the
  documented default ``/v1/endpoints/ENDPOINT/deployedModels/DEPLOYED_MODEL:predict``; a batch
  job has no endpoint, so ENDPOINT and DEPLOYED_MODEL are the job's numeric id here, a choice of
  this runner), ``AIP_STORAGE_URI``, ``AIP_MODE=PREDICTION``, ``AIP_MODE_VERSION``,
  ``AIP_FRAMEWORK=CUSTOM_CONTAINER``, ``AIP_MACHINE_TYPE``, ``AIP_ENDPOINT_ID``,
  ``AIP_DEPLOYED_MODEL_ID``.
- Differences, all because one machine stands for many: each replica listens on a free port of
  127.0.0.1 (``AIP_HTTP_PORT`` says which; Vertex gives each container the spec's port, 8080 by
  default); ``AIP_STORAGE_URI`` is a local folder holding the copy of ``artifactUri`` (Vertex
  copies the artifact to a bucket of its own and gives its gs:// URI).
- Input: each ``inputConfig.gcsSource.uris`` entry (``*`` wildcards allowed) read from the local
  folder standing for Cloud Storage; each non-blank line is one instance, sent as it is, in
  ``{"instances": [...], "parameters": modelParameters}`` requests of ``batchSize`` (default 64)
  instances [2]; a replica takes the next batch when it is free, so output order follows completion.
- Output under ``outputUriPrefix/prediction-<model display name>-<create time>/`` [3]:
  ``predictions_0000N.jsonl`` (one file per replica that predicted; lines ``{"instance",
  "prediction"}``) and ``errors_0000N.jsonl`` (lines ``{"instance", "error": {"code",
  "message"}}``: every instance of a request the container answered with an error, with its
  google.rpc code; a line that is not JSON, with the line's text as the instance and
  ``gs://...:LINE`` in the message, which is this runner's wording). The create time is written
  as real jobs write it (``2024-03-20T15_42_28.417075Z``; the field docs say
  ``YYYY-MM-DDThh:mm:ss.sssZ``); the 5-digit file numbers too (the docs show 4).

[1] https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements
[2] "Get batch predictions from a custom trained model", input data requirements,
    https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions
[3] ``BatchPredictionJob.OutputConfig.gcs_destination`` (aiplatform_v1 field docs) (all read 2026-11-29).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from . import clean_env
from .vertex import Replica, local_gcs

#: the unijob serving image's ENTRYPOINT (:data:`unijob.serve.image.ENTRYPOINT`).
SERVING_ENTRYPOINT = ("python", "-m", "unijob.serve")
DEFAULT_BATCH_SIZE = 64
_RPC_CODES = {400: 3, 404: 5, 413: 3, 429: 8, 500: 13, 503: 14, 504: 4}


@dataclass
class BatchOutcome:
    """A BatchPredictionJob run under the contract.

    Attributes:
        state: ``JOB_STATE_SUCCEEDED``, ``JOB_STATE_FAILED`` (no replica became ready, or every
            replica died) or ``JOB_STATE_CANCELLED``.
        error: Vertex-style message when FAILED.
        output_dir: the ``gs://.../prediction-<model>-<time>`` directory (``outputInfo.gcsOutputDirectory``).
        successful / failed / incomplete: ``completionStats``.
        files: gs:// URI -> bytes of every file written (what lands in Cloud Storage).
    """

    state: str
    error: Optional[str]
    output_dir: str
    successful: int
    failed: int
    incomplete: int
    replicas: list[Replica]
    files: dict[str, bytes]


def _input_lines(uris: list[str], gcs_root: Path) -> list[tuple[str, int, str]]:
    """``[(gs:// URI, line number, text)]`` of every non-blank input line, files in URI order."""
    import glob

    out = []
    for uri in uris:
        local = str(gcs_root / uri[len("gs://"):])
        paths = sorted(glob.glob(local)) if "*" in uri else [local]
        for path in paths:
            name = "gs://" + str(Path(path).relative_to(gcs_root))
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        out.append((name, n, line.rstrip("\n")))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_replica_env(job: Mapping[str, Any], model: Mapping[str, Any], job_id: str, port: int,
                      storage: Path) -> dict[str, str]:
    """The environment Vertex gives a batch prediction container (see the module docstring)."""
    cs = model.get("containerSpec", {})
    env = {e["name"]: e.get("value", "") for e in cs.get("env", [])}
    default = f"/v1/endpoints/{job_id}/deployedModels/{job_id}:predict"
    machine = (job.get("dedicatedResources") or {}).get("machineSpec", {}).get("machineType", "n1-standard-2")
    env.update({"AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": cs.get("healthRoute") or default,
                "AIP_PREDICT_ROUTE": cs.get("predictRoute") or default, "AIP_STORAGE_URI": str(storage),
                "AIP_MODE": "PREDICTION", "AIP_MODE_VERSION": "1.0.0", "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
                "AIP_MACHINE_TYPE": machine, "AIP_ENDPOINT_ID": job_id, "AIP_DEPLOYED_MODEL_ID": job_id})
    return env


def run_batch(job: Mapping[str, Any], model: Mapping[str, Any], *, python: Union[str, Path],
              program_dir: Union[str, Path], workdir: Union[str, Path], objects: Optional[Mapping[str, bytes]] = None,
              job_id: str = "1", create_time: Optional[float] = None, timeout: float = 600.0,
              start_timeout: float = 120.0, cancel: Optional[threading.Event] = None,
              on_line: Optional[Callable[[str, str], None]] = None) -> BatchOutcome:
    """Run a BatchPredictionJob here as Vertex runs it (see the module docstring) and wait for it.

    Args:
        job / model: the BatchPredictionJob and its Model, as REST JSON (camelCase).
        python: the serving image's Python (it has unijob and the handler's packages).
        program_dir: the image's working directory (the handler's code).
        workdir: holds ``gcs/`` (standing for Cloud Storage), the model copy and replica tmp dirs.
        objects: gs:// URI -> bytes placed under ``gcs/`` first (the fake's Cloud Storage).
        job_id: the job's numeric id. create_time: POSIX seconds (the output folder's name).
        timeout: seconds before the replicas are stopped and :class:`TimeoutError` raised.
        start_timeout: seconds a replica may take to answer its health route.
        cancel: set it to cancel the job: no new request is sent, the replicas are stopped.
        on_line: ``on_line(task, text)`` for each line a replica prints, as it prints it.
    """
    import datetime
    import queue
    import shutil

    import httpx

    workdir = Path(workdir)
    gcs_root = local_gcs(workdir, objects)
    cancel = cancel or threading.Event()
    storage = workdir / "aip-storage"
    artifact = model.get("artifactUri")
    if artifact and not storage.exists():
        shutil.copytree(gcs_root / artifact[len("gs://"):].rstrip("/"), storage)
    created = datetime.datetime.fromtimestamp(create_time or time.time(), datetime.timezone.utc)
    prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
    out_dir = f"{prefix}/prediction-{model.get('displayName', 'model')}-{created.strftime('%Y-%m-%dT%H_%M_%S.%fZ')}"
    size = int((job.get("manualBatchTuningParameters") or {}).get("batchSize") or DEFAULT_BATCH_SIZE)
    params = job.get("modelParameters")
    lines = _input_lines(list(job["inputConfig"]["gcsSource"]["uris"]), gcs_root)
    todo: "queue.Queue[list[tuple[str, int, str]]]" = queue.Queue()
    for i in range(0, len(lines), size):
        todo.put(lines[i:i + size])
    n_replicas = int((job.get("dedicatedResources") or {}).get("startingReplicaCount") or 1)
    cs = model.get("containerSpec", {})
    argv = list(cs.get("command") or SERVING_ENTRYPOINT) + list(cs.get("args") or [])
    results: list[tuple[list[str], list[str]]] = [([], []) for _ in range(n_replicas)]
    procs: list[tuple[subprocess.Popen, Replica, int, dict[str, str]]] = []
    for r in range(n_replicas):
        port = _free_port()
        task = f"replica-{r}"
        tmp = workdir / "replicas" / task / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = clean_env({**batch_replica_env(job, model, job_id, port, storage), "TMPDIR": str(tmp),
                         "PYTHONUNBUFFERED": "1", "UNIJOB_SERVE_HOST": "127.0.0.1",
                         "UNIJOB_MODEL_CACHE": str(tmp)})
        env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
        rep = Replica(task=task, exit_code=None, lines=[], started=time.time())
        proc = subprocess.Popen(argv, cwd=str(program_dir), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, rep, port, env))

    def pump(proc: subprocess.Popen, rep: Replica) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            rep.lines.append(text)
            if on_line:
                on_line(rep.task, text)

    pumps = [threading.Thread(target=pump, args=(p, rep), daemon=True) for p, rep, _, _ in procs]
    for t in pumps:
        t.start()

    def error_line(instance: Any, code: int, message: str) -> str:
        return json.dumps({"instance": instance, "error": {"code": code, "message": message}})

    def work(r: int) -> None:
        proc, rep, port, env = procs[r]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=300) as http:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None or cancel.is_set() or time.monotonic() > deadline:
                    return
                try:
                    if http.get(base + env["AIP_HEALTH_ROUTE"]).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            preds, errs = results[r]
            while not cancel.is_set():
                try:
                    batch = todo.get_nowait()
                except queue.Empty:
                    return
                instances, sent = [], []
                for uri, n, text in batch:
                    try:
                        instances.append(json.loads(text))
                        sent.append(instances[-1])
                    except ValueError as e:
                        errs.append(error_line(text, 3, f"{uri}:{n}: the line is not valid JSON ({e})"))
                if not sent:
                    continue
                body: dict[str, Any] = {"instances": sent}
                if params is not None:
                    body["parameters"] = params
                try:
                    resp = http.post(base + env["AIP_PREDICT_ROUTE"], json=body)
                except httpx.TransportError as e:
                    if proc.poll() is not None:  # the replica died: its batch goes to another one
                        todo.put(batch)
                        return
                    errs.extend(error_line(x, 14, f"{type(e).__name__}: {e}") for x in sent)
                    continue
                out = resp.json().get("predictions") if resp.status_code == 200 else None
                if isinstance(out, list) and len(out) == len(sent):
                    preds.extend(json.dumps({"instance": x, "prediction": p}) for x, p in zip(sent, out))
                else:
                    msg = resp.text[:500] if resp.status_code != 200 else \
                        f"the model returned {len(out or [])} predictions for {len(sent)} instances"
                    errs.extend(error_line(x, _RPC_CODES.get(resp.status_code, 2), msg) for x in sent)

    workers = [threading.Thread(target=work, args=(r,), daemon=True) for r in range(n_replicas)]
    for t in workers:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                cancel.set()
                raise TimeoutError(f"batch prediction job {job.get('displayName')} still running after {timeout} s")
    finally:
        for p, _, _, _ in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p, rep, _, _ in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            rep.exit_code = p.returncode
        for t in pumps:
            t.join(timeout=5)
    files: dict[str, bytes] = {}
    for kind, idx in (("predictions", 0), ("errors", 1)):
        chunks = [res[idx] for res in results if res[idx]]
        for i, chunk in enumerate(chunks, start=1):
            files[f"{out_dir}/{kind}_{i:05d}.jsonl"] = ("\n".join(chunk) + "\n").encode()
    for uri, data in files.items():
        path = gcs_root / uri[len("gs://"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    ok = sum(len(p) for p, _ in results)
    failed = sum(len(e) for _, e in results)
    incomplete = len(lines) - ok - failed
    error = None
    if cancel.is_set():
        state = "JOB_STATE_CANCELLED"
    elif incomplete and ok + failed == 0:
        state = "JOB_STATE_FAILED"
        dead = [rep for _, rep, _, _ in procs if rep.exit_code not in (None, 0, -signal.SIGTERM)]
        error = (f"The model server of {dead[0].task} exited with status {dead[0].exit_code} before it became ready"
                 if dead else f"No replica answered its health route within {start_timeout:g} s")
    elif incomplete:
        state = "JOB_STATE_PARTIALLY_SUCCEEDED"
        error = f"{incomplete} instances were not processed: every replica stopped"
    else:
        state = "JOB_STATE_SUCCEEDED"
    return BatchOutcome(state=state, error=error, output_dir=out_dir, successful=ok, failed=failed,
                        incomplete=incomplete, replicas=[rep for _, rep, _, _ in procs], files=files)
