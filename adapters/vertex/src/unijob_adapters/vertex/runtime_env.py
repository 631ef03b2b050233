"""Inside a Vertex AI custom job: map Vertex's environment onto :mod:`unijob.runtime`'s context.
Standard library only (this runs in training containers).

What Vertex sets (https://cloud.google.com/vertex-ai/docs/training/distributed-training#cluster-spec
and .../code-requirements#environment-variables, checked 2026-11-21):

- ``CLUSTER_SPEC``: JSON ``{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...]},
  "environment": "cloud", "task": {"type": "workerpool1", "index": 0}, "job": "..."}``.
- In prebuilt PyTorch containers: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE`` (nodes) and
  ``RANK`` (this node's index across pools; the chief is 0).
- ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR``, ``AIP_TENSORBOARD_LOG_DIR`` under the job's
  ``baseOutputDirectory``; ``CLOUD_ML_JOB_ID``.

Under torchrun (unijob's script launcher, or the user's own) ``LOCAL_RANK`` is set and
``RANK``/``WORLD_SIZE`` are per process; those are then left to the torchrun-compatible defaults.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from unijob.runtime_env import RuntimeEnv


#: Where Vertex mounts Cloud Storage in training containers (Cloud Storage FUSE,
#: https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system, read 2026-11-21).
GCS_FUSE_ROOT = "/gcs"
#: Overrides :data:`GCS_FUSE_ROOT` where buckets are mounted elsewhere (your own gcsfuse mount,
#: or unijob.testing.contracts.vertex, where a local folder stands for the mount).
GCS_FUSE_ROOT_ENV = "UNIJOB_GCS_FUSE_ROOT"


def _gcs_local(uri: str, root: str = GCS_FUSE_ROOT) -> str:
    return root.rstrip("/") + "/" + uri[len("gs://"):] if uri.startswith("gs://") else uri


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class VertexRuntimeEnv(RuntimeEnv):
    """Reads ``CLUSTER_SPEC``, the PyTorch variables and the ``AIP_*`` directories."""

    name = "vertex"

    def detect(self, environ: Mapping[str, str]) -> bool:
        return "CLUSTER_SPEC" in environ or "CLOUD_ML_JOB_ID" in environ or "AIP_MODEL_DIR" in environ

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        root = environ.get(GCS_FUSE_ROOT_ENV) or GCS_FUSE_ROOT
        try:
            cluster = json.loads(environ.get("CLUSTER_SPEC") or "{}")
        except ValueError:
            cluster = {}
        pools = cluster.get("cluster") or {}
        task = cluster.get("task") or {}
        ordered = sorted((p for p in pools if p.startswith("workerpool")), key=lambda p: _int(p[10:], 0))
        hosts = [h for p in ordered for h in (pools.get(p) or [])]
        node_rank = None
        if task.get("type") in pools:
            node_rank = sum(len(pools[p] or []) for p in ordered[:ordered.index(task["type"])]) + _int(task.get("index"), 0)
        torchrun = "LOCAL_RANK" in environ
        if hosts:
            out["nodes"] = len(hosts)
            first = hosts[0].rsplit(":", 1)
            out["master_addr"] = first[0]
            if len(first) == 2 and not environ.get("MASTER_PORT"):
                out["master_port"] = _int(first[1], 29500)
        if node_rank is not None:
            out["node_rank"] = node_rank
        if environ.get("MASTER_ADDR"):
            out["master_addr"] = environ["MASTER_ADDR"]
        if environ.get("MASTER_PORT"):
            out["master_port"] = _int(environ["MASTER_PORT"], 29500)
        if not torchrun:
            # Vertex's RANK / WORLD_SIZE count nodes (one process per node without torchrun).
            if environ.get("RANK"):
                out["node_rank"] = out["rank"] = _int(environ["RANK"], 0)
            elif node_rank is not None:
                out["rank"] = node_rank
            if environ.get("WORLD_SIZE"):
                out["world_size"] = out["nodes"] = _int(environ["WORLD_SIZE"], 1)
            elif hosts:
                out["world_size"] = len(hosts)
            out.setdefault("local_rank", 0)
            out.setdefault("local_world_size", 1)
        if environ.get("AIP_MODEL_DIR"):
            out["model_dir"] = _gcs_local(environ["AIP_MODEL_DIR"], root)
        # The spec's checkpoint.uri (UNIJOB_CHECKPOINT_*) wins over Vertex's default under the
        # base output directory: a resumed or fallback job must find the checkpoints it wrote.
        if environ.get("AIP_CHECKPOINT_DIR") and not environ.get("UNIJOB_CHECKPOINT_URI"):
            out["checkpoint_dir"] = _gcs_local(environ["AIP_CHECKPOINT_DIR"], root)
            out["checkpoint_uri"] = environ["AIP_CHECKPOINT_DIR"]
        if environ.get("AIP_TENSORBOARD_LOG_DIR"):
            out["tensorboard_dir"] = _gcs_local(environ["AIP_TENSORBOARD_LOG_DIR"], root)
        if environ.get("CLOUD_ML_JOB_ID"):
            out["job_id"] = environ["CLOUD_ML_JOB_ID"]
        elif cluster.get("job"):
            try:
                out["job_id"] = json.loads(cluster["job"]).get("job_name") or ""
            except (ValueError, AttributeError):
                pass
        return {k: v for k, v in out.items() if v != ""}
