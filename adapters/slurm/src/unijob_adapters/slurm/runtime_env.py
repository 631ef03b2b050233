"""Inside a rank of a unijob gang on Slurm: map Slurm's task environment onto unijob's context.

Standard library only (this runs with the cluster's Python, carried by the runtime wheel). The batch
script (see :mod:`unijob_adapters.slurm.plan`) sets ``UNIJOB_TARGET=slurm``, ``MASTER_ADDR``,
``MASTER_PORT`` and the ``UNIJOB_*`` contract; ``srun`` sets, per task (srun(1), "OUTPUT ENVIRONMENT
VARIABLES"): ``SLURM_PROCID`` (global rank), ``SLURM_NTASKS`` (world size), ``SLURM_LOCALID``
(rank on the node), ``SLURM_NODEID`` (node index within the allocation), ``SLURM_NNODES``,
``SLURM_NTASKS_PER_NODE``; a requeued batch job sees ``SLURM_RESTART_COUNT`` (sbatch(1)).
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
                return int(str(v).split("(")[0])  # SLURM_NTASKS_PER_NODE may read "2(x3)"
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


class SlurmEnv(RuntimeEnv):
    """The ``slurm`` runtime environment (entry point ``unijob.runtime_envs: slurm``)."""

    name = "slurm"

    def detect(self, environ: Mapping[str, str]) -> bool:
        """True in a rank started by unijob's batch script (``UNIJOB_TARGET=slurm``), or in any
        ``srun`` task (``SLURM_PROCID`` and ``SLURM_JOB_ID`` set)."""
        return environ.get("UNIJOB_TARGET") == "slurm" or ("SLURM_PROCID" in environ and "SLURM_JOB_ID" in environ)

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Context keys (see :meth:`unijob.contract.RuntimeEnv.read`) from the task's environment."""
        out: dict[str, Any] = {}
        nodes = _int(environ, "SLURM_NNODES", "SLURM_JOB_NUM_NODES", "UNIJOB_NODES")
        world = _int(environ, "SLURM_NTASKS", "WORLD_SIZE")
        local_ws = _int(environ, "SLURM_NTASKS_PER_NODE", "LOCAL_WORLD_SIZE")
        if local_ws is None and world is not None and nodes:
            local_ws = max(world // nodes, 1)
        for key, val in (("rank", _int(environ, "SLURM_PROCID", "RANK")), ("world_size", world),
                         ("local_rank", _int(environ, "SLURM_LOCALID", "LOCAL_RANK")),
                         ("local_world_size", local_ws), ("node_rank", _int(environ, "SLURM_NODEID", "NODE_RANK")),
                         ("nodes", nodes), ("master_port", _int(environ, "MASTER_PORT")),
                         ("restart_count", _int(environ, "SLURM_RESTART_COUNT"))):
            if val is not None:
                out[key] = val
        out.setdefault("restart_count", 0)
        if environ.get("MASTER_ADDR"):
            out["master_addr"] = environ["MASTER_ADDR"]
        channels = _json(environ, "UNIJOB_CHANNELS")
        if isinstance(channels, dict):
            out["channels"] = channels
        hp = _json(environ, "UNIJOB_HYPERPARAMETERS")
        if isinstance(hp, dict):
            out["hyperparameters"] = hp
        for key, name in (("output_dir", "UNIJOB_OUTPUT_DIR"), ("checkpoint_uri", "UNIJOB_CHECKPOINT_URI"),
                          ("checkpoint_dir", "UNIJOB_CHECKPOINT_DIR"), ("job_id", "UNIJOB_JOB_ID")):
            if environ.get(name):
                out[key] = environ[name]
        if "job_id" not in out and environ.get("SLURM_JOB_ID"):
            out["job_id"] = environ["SLURM_JOB_ID"]
        return out
