"""Inside a rank of a unijob gang on Ray: map the gang launcher's environment onto unijob's context.

Standard library only (it reaches the job in the runtime wheel). The launcher
(:mod:`unijob_ray_gang`) sets, per rank, ``UNIJOB_TARGET=ray``, ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and
``UNIJOB_RESTART_COUNT``; the job's ``runtime_env.env_vars`` carry the ``UNIJOB_*`` contract
(channels, hyperparameters, output and checkpoint locations). Ray itself sets ``RAY_JOB_ID`` and
``RAY_ADDRESS`` in the job.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from unijob.runtime_env import RuntimeEnv


def _int(env: Mapping[str, str], name: str) -> Any:
    v = env.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


class RayEnv(RuntimeEnv):
    """The ``ray`` runtime environment (entry point ``unijob.runtime_envs: ray``)."""

    name = "ray"

    def detect(self, environ: Mapping[str, str]) -> bool:
        """True in a rank started by unijob's gang launcher on Ray (``UNIJOB_TARGET=ray``)."""
        return environ.get("UNIJOB_TARGET") == "ray"

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Context keys (see :meth:`unijob.runtime_env.RuntimeEnv.read`) from the rank's environment."""
        out: dict[str, Any] = {}
        for key, name in (("rank", "RANK"), ("world_size", "WORLD_SIZE"), ("local_rank", "LOCAL_RANK"),
                          ("local_world_size", "LOCAL_WORLD_SIZE"), ("node_rank", "NODE_RANK"),
                          ("nodes", "UNIJOB_NODES"), ("master_port", "MASTER_PORT"),
                          ("restart_count", "UNIJOB_RESTART_COUNT")):
            val = _int(environ, name)
            if val is not None:
                out[key] = val
        out.setdefault("restart_count", 0)
        for key, name in (("master_addr", "MASTER_ADDR"), ("output_dir", "UNIJOB_OUTPUT_DIR"),
                          ("checkpoint_uri", "UNIJOB_CHECKPOINT_URI"), ("checkpoint_dir", "UNIJOB_CHECKPOINT_DIR"),
                          ("job_id", "UNIJOB_JOB_ID")):
            if environ.get(name):
                out[key] = environ[name]
        for key, name in (("channels", "UNIJOB_CHANNELS"), ("hyperparameters", "UNIJOB_HYPERPARAMETERS")):
            try:
                val = json.loads(environ.get(name) or "null")
            except ValueError:
                val = None
            if isinstance(val, dict):
                out[key] = val
        return out
