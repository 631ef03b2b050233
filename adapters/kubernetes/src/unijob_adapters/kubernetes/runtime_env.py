"""Inside a pod of a unijob gang on Kubernetes: map what the manifests set onto unijob's context.

Standard library only (this runs in training containers). The manifests (see
:mod:`unijob_adapters.kubernetes.plan`) set ``UNIJOB_TARGET=kubernetes``; the Job controller sets
``JOB_COMPLETION_INDEX`` (the node rank); the pod env carries ``NODE_RANK``, ``NNODES``,
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``; torchrun (several processes
per node) adds ``RANK``/``LOCAL_RANK`` per process; one process per node gets ``RANK = NODE_RANK``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from unijob.runtime_env import RuntimeEnv


def _int(env: Mapping[str, str], *names: str) -> Any:
    for n in names:
        v = env.get(n)
        if v not in (None, ""):
            try:
                return int(v)  # type: ignore[arg-type]
            except ValueError:
                continue
    return None


def _json(env: Mapping[str, str], name: str) -> Any:
    v = env.get(name)
    if not v:
        return None
    try:
        return json.loads(v)
    except ValueError:
        return None


class KubernetesEnv(RuntimeEnv):
    """The ``kubernetes`` runtime environment (entry point ``unijob.runtime_envs: kubernetes``)."""

    name = "kubernetes"

    def detect(self, environ: Mapping[str, str]) -> bool:
        """True in a unijob pod (``UNIJOB_TARGET=kubernetes``), or an Indexed Job pod on a cluster."""
        return environ.get("UNIJOB_TARGET") == "kubernetes" or (
            "JOB_COMPLETION_INDEX" in environ and "KUBERNETES_SERVICE_HOST" in environ)

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Context keys (see :meth:`unijob.contract.RuntimeEnv.read`) from the pod's environment.

        Rank arithmetic when only the node rank is known: ``rank = node_rank x local_world_size +
        local_rank`` (torchrun's assignment for a static rendezvous).
        """
        out: dict[str, Any] = {}
        node_rank = _int(environ, "NODE_RANK", "GROUP_RANK", "JOB_COMPLETION_INDEX")
        local_ws = _int(environ, "LOCAL_WORLD_SIZE") or 1
        local_rank = _int(environ, "LOCAL_RANK")
        if local_rank is None:
            local_rank = 0
        nodes = _int(environ, "NNODES")
        world = _int(environ, "WORLD_SIZE")
        if world is None and nodes is not None:
            world = nodes * local_ws
        rank = _int(environ, "RANK")
        if rank is None and node_rank is not None:
            rank = node_rank * local_ws + local_rank
        for key, val in (("rank", rank), ("world_size", world), ("local_rank", local_rank),
                         ("local_world_size", local_ws), ("node_rank", node_rank), ("nodes", nodes),
                         ("master_port", _int(environ, "MASTER_PORT"))):
            if val is not None:
                out[key] = val
        if environ.get("MASTER_ADDR"):
            out["master_addr"] = environ["MASTER_ADDR"]
        channels = _json(environ, "UNIJOB_CHANNELS")
        if isinstance(channels, dict):
            out["channels"] = channels
        hp = _json(environ, "UNIJOB_HYPERPARAMETERS")
        if isinstance(hp, dict):
            out["hyperparameters"] = hp
        if environ.get("UNIJOB_OUTPUT_URI"):
            out["output_dir"] = environ["UNIJOB_OUTPUT_URI"]
        if environ.get("UNIJOB_CHECKPOINT_URI"):
            out["checkpoint_uri"] = environ["UNIJOB_CHECKPOINT_URI"]
        if environ.get("UNIJOB_CHECKPOINT_DIR"):
            out["checkpoint_dir"] = environ["UNIJOB_CHECKPOINT_DIR"]
        if environ.get("UNIJOB_JOB_NAME"):
            out["job_id"] = environ["UNIJOB_JOB_NAME"]
        return out
