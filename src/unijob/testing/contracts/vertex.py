"""Vertex AI's custom-training start contract, run on this machine: every replica of every worker
pool of a ``CustomJob`` started with its container's command, args and the environment Vertex
documents, with no Docker and no network.

What Vertex gives each replica, and what stands for it here:

- The container's ``command`` + ``args`` and its ``env`` (``containerSpec``), run with the job
  image's Python first on ``PATH`` (:func:`unijob.testing.contracts.job_python`), each replica in
  its own writable layer over it (:func:`unijob.testing.contracts.python_layer`), as each replica is its
  own container.
- ``CLUSTER_SPEC``: ``{"cluster": {"workerpool0": ["host:port"], ...}, "environment": "cloud",
  "task": {"type": "workerpoolN", "index": i}, "job": "<the CustomJobSpec as JSON>"}`` and
  ``TF_CONFIG`` (pools 0-3 named ``chief``, ``worker``, ``ps``, ``evaluator``) [1].
- In prebuilt PyTorch containers, ``MASTER_ADDR`` (the workerpool0 replica), ``MASTER_PORT``,
  ``WORLD_SIZE`` (the number of replicas) and ``RANK`` (this replica's index across pools) [1].
- ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR``, ``AIP_TENSORBOARD_LOG_DIR`` under
  ``baseOutputDirectory`` (``model/``, ``checkpoints/``, ``logs/``) and ``CLOUD_ML_JOB_ID`` [2].
- Cloud Storage mounted at ``/gcs/<bucket>`` [3]: a local folder stands for it. ``/gcs/`` in the
  command, args and env values is rewritten to that folder, and ``UNIJOB_GCS_FUSE_ROOT`` tells
  unijob's runtime where the mount is (it maps ``AIP_*`` gs:// URIs onto it). The objects given to
  :func:`run` (the fake's uploads) are written there first.
- Replica hosts: replica ``n`` (counted across pools) is the loopback address ``127.0.0.<n+1>``;
  each container gets its own ``TMPDIR`` (a container has its own ``/tmp``).

[1] "Distributed training", https://cloud.google.com/vertex-ai/docs/training/distributed-training
(sections "Cluster specification", "CLUSTER_SPEC", "TF_CONFIG", PyTorch environment variables).
[2] "Prepare training code: environment variables",
https://cloud.google.com/vertex-ai/docs/training/code-requirements#environment-variables.
[3] "Use Cloud Storage as a mounted file system",
https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system (all read 2026-11-29).

A replica that exits non-zero fails the job; Vertex reports ``The replica workerpoolN-i exited with
a non-zero status of C`` (:attr:`Outcome.error`). Nothing here calls the adapter.
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
from typing import Any, Mapping, Optional, Union

from . import clean_env, python_layer

GCS = "/gcs/"
PORT = 2222
_TF_TYPES = ("chief", "worker", "ps", "evaluator")


@dataclass
class Replica:
    """One started replica: its task name (``workerpool0-0``), exit code, output lines, and the
    wall-clock time (``time.time()``) its process was spawned."""

    task: str
    exit_code: Optional[int]
    lines: list[str]
    first_line_at: Optional[float] = None
    started: float = 0.0


@dataclass
class Outcome:
    """A CustomJob run under the contract: ``state`` is ``JOB_STATE_SUCCEEDED`` or
    ``JOB_STATE_FAILED``; ``error`` Vertex's message for the first failing replica."""

    state: str
    error: Optional[str]
    replicas: list[Replica]
    gcs_root: Path

    def lines(self, task: str) -> list[str]:
        return next(r.lines for r in self.replicas if r.task == task)

    def gcs_path(self, uri: str) -> Path:
        """Where ``gs://bucket/path`` is in the local folder standing for ``/gcs``."""
        return self.gcs_root / uri[len("gs://"):]


def _body(body_or_plan: Any) -> dict[str, Any]:
    if hasattr(body_or_plan, "request"):
        return body_or_plan.request("customJobs", when="submit").body
    return body_or_plan


def local_gcs(workdir: Path, objects: Optional[Mapping[str, bytes]] = None) -> Path:
    """``workdir/gcs``, the local folder standing for Cloud Storage (``gs://B/K`` is ``gcs/B/K``,
    as the job sees it under ``/gcs/B/K`` through Cloud Storage FUSE), holding ``objects``
    (``gs://`` URI -> bytes)."""
    gcs_root = Path(workdir) / "gcs"
    gcs_root.mkdir(parents=True, exist_ok=True)
    for uri, data in (objects or {}).items():
        path = gcs_root / uri[len("gs://"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return gcs_root


def replica_env(job: dict[str, Any], pool: int, index: int, job_id: str, gcs_root: Path) -> dict[str, str]:
    """The environment Vertex gives replica ``index`` of worker pool ``pool`` (see the module docstring)."""
    spec = job["jobSpec"]
    pools = spec["workerPoolSpecs"]
    hosts: list[list[str]] = []
    n = 0
    for p in pools:
        count = int(p.get("replicaCount", 1))
        hosts.append([f"127.0.0.{n + i + 1}:{PORT}" for i in range(count)])
        n += count
    rank = sum(len(h) for h in hosts[:pool]) + index
    env = {e["name"]: e.get("value", "") for e in pools[pool].get("containerSpec", {}).get("env", [])}
    cluster = {f"workerpool{i}": h for i, h in enumerate(hosts) if h}
    job_json = json.dumps(spec, sort_keys=True)
    env["CLUSTER_SPEC"] = json.dumps({"cluster": cluster, "environment": "cloud",
                                      "task": {"type": f"workerpool{pool}", "index": index}, "job": job_json})
    tf_cluster = {_TF_TYPES[i]: h for i, h in enumerate(hosts) if h and i < len(_TF_TYPES)}
    env["TF_CONFIG"] = json.dumps({"cluster": tf_cluster, "environment": "cloud", "job": job_json,
                                   "task": {"type": _TF_TYPES[min(pool, 3)], "index": index}})
    image = pools[pool].get("containerSpec", {}).get("imageUri", "")
    if "/pytorch-" in image or "pytorch" in image.rsplit("/", 1)[-1]:
        env.update({"MASTER_ADDR": hosts[0][0].rsplit(":", 1)[0], "MASTER_PORT": str(PORT),
                    "WORLD_SIZE": str(n), "RANK": str(rank)})
    base = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if base:
        base = base.rstrip("/")
        env.update({"AIP_MODEL_DIR": f"{base}/model/", "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
                    "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/"})
    env["CLOUD_ML_JOB_ID"] = job_id
    env["UNIJOB_GCS_FUSE_ROOT"] = str(gcs_root)
    return {k: _local(v, gcs_root) for k, v in env.items()}


def _local(value: str, gcs_root: Path) -> str:
    return value.replace(GCS, str(gcs_root) + "/")


def _pump(proc: subprocess.Popen, rep: Replica) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        if rep.first_line_at is None:
            rep.first_line_at = time.monotonic()
        rep.lines.append(raw.decode(errors="replace").rstrip("\n"))


def run(body_or_plan: Any, *, python: Union[str, Path], workdir: Union[str, Path],
        objects: Optional[Mapping[str, bytes]] = None, job_id: str = "1", timeout: float = 600.0,
        network: bool = True) -> Outcome:
    """Start every replica of a planned CustomJob here, as Vertex would, and wait for them.

    Args:
        body_or_plan: a unijob ``Plan`` (its ``customJobs`` request sent at submit) or the
            CustomJob REST body (camelCase, as the plan holds it).
        python: the job image's Python; its venv's ``bin`` comes first on ``PATH``.
        workdir: holds ``gcs/`` (standing for ``/gcs``) and each replica's ``tmp/``.
        objects: ``gs://`` URI -> bytes to place under ``gcs/`` first (the uploads a fake received).
        job_id: the CustomJob's numeric id (``CLOUD_ML_JOB_ID``).
        timeout: seconds before every replica is stopped and :class:`TimeoutError` raised.
        network: False stands for a job without internet egress (a VPC without NAT):
            ``PIP_NO_INDEX=1``, so pip fails at once instead of reaching an index.

    Returns:
        the :class:`Outcome`; a failing replica stops the others (the job fails).
    """
    job = _body(body_or_plan)
    workdir = Path(workdir)
    gcs_root = local_gcs(workdir, objects)
    procs: list[tuple[subprocess.Popen, Replica]] = []
    for p, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        cs = pool["containerSpec"]
        argv = [_local(a, gcs_root) for a in list(cs.get("command") or []) + list(cs.get("args") or [])]
        if not argv:
            raise ValueError(f"workerPoolSpecs[{p}] has no command: an image's own entrypoint cannot run here")
        for i in range(int(pool.get("replicaCount", 1))):
            task = f"workerpool{p}-{i}"
            tmp = workdir / "replicas" / task / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            env = clean_env({**replica_env(job, p, i, job_id, gcs_root), "TMPDIR": str(tmp),
                             "PYTHONUNBUFFERED": "1", **({} if network else {"PIP_NO_INDEX": "1"})})
            py = python_layer(python, workdir / "replicas" / task / "python") / "python"
            env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
            rep = Replica(task=task, exit_code=None, lines=[], started=time.time())
            proc = subprocess.Popen(argv, cwd=str(tmp.parent), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            procs.append((proc, rep))
    pumps = [threading.Thread(target=_pump, args=pr, daemon=True) for pr in procs]
    for t in pumps:
        t.start()
    deadline = time.monotonic() + timeout
    first_failed: Optional[Replica] = None
    try:
        while True:
            codes = [p.poll() for p, _ in procs]
            bad = [rep for (_, rep), c in zip(procs, codes) if c not in (None, 0)]
            if bad:  # the first replica to fail fails the job; the others are stopped
                first_failed = bad[0]
                break
            if all(c is not None for c in codes):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CustomJob {job.get('displayName')} still running after {timeout} s")
            time.sleep(0.05)
    finally:
        for p, _ in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p, rep in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rep.exit_code = p.returncode
        for t in pumps:
            t.join(timeout=5)
    error = None
    if first_failed is not None:
        error = (f"The replica {first_failed.task} exited with a non-zero status of {first_failed.exit_code}. "
                 "To find out more about why your job exited please check the logs")
    return Outcome(state="JOB_STATE_FAILED" if error else "JOB_STATE_SUCCEEDED", error=error,
                   replicas=[rep for _, rep in procs], gcs_root=gcs_root)
