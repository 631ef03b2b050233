"""Read a SageMaker training container's environment for :mod:`unijob.runtime` (stdlib only).

Variables read (SageMaker training toolkit, "Environment variables" in
https://github.com/aws/sagemaker-training-toolkit/blob/master/ENVIRONMENT_VARIABLES.md, read
2026-11-21): ``SM_HOSTS`` (JSON list, e.g. ``["algo-1","algo-2"]``), ``SM_CURRENT_HOST``,
``SM_NUM_GPUS``, ``SM_CHANNELS`` and ``SM_CHANNEL_<NAME>`` (local channel dirs),
``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_HPS`` (JSON), ``TRAINING_JOB_NAME``; and the
torchrun variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) that the toolkit's ``torch_distributed`` launcher
sets. Without torchrun (one process per host) ranks derive from the host's place in ``SM_HOSTS``
and the master is the first host.

The checkpoint directory is ``/opt/ml/checkpoints``, which SageMaker syncs to
``CheckpointConfig.S3Uri`` (the ``checkpoint_uri``); write checkpoints to ``checkpoint_dir``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from unijob.runtime_env import RuntimeEnv

CHECKPOINT_DIR = "/opt/ml/checkpoints"
DEFAULT_MASTER_PORT = 29500  # torchrun's default


def _json(environ: Mapping[str, str], key: str, default: Any) -> Any:
    try:
        return json.loads(environ[key])
    except (KeyError, ValueError):
        return default


def _int(environ: Mapping[str, str], key: str) -> int | None:
    try:
        return int(environ[key])
    except (KeyError, ValueError):
        return None


class SageMakerRuntimeEnv(RuntimeEnv):
    """Context of a process inside a SageMaker training job (see the module docstring)."""

    name = "sagemaker"

    def detect(self, environ: Mapping[str, str]) -> bool:
        return "SM_CURRENT_HOST" in environ and "SM_HOSTS" in environ

    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Context keys from the SageMaker env; torchrun's variables win where both exist."""
        hosts = _json(environ, "SM_HOSTS", []) or []
        current = environ.get("SM_CURRENT_HOST", "")
        nodes = max(len(hosts), 1)
        node_rank = hosts.index(current) if current in hosts else 0
        gpus = _int(environ, "SM_NUM_GPUS") or 0

        torchrun = "RANK" in environ and "WORLD_SIZE" in environ
        if torchrun:
            local_world = _int(environ, "LOCAL_WORLD_SIZE") or max(gpus, 1)
            ctx: dict[str, Any] = {
                "rank": _int(environ, "RANK") or 0,
                "world_size": _int(environ, "WORLD_SIZE") or 1,
                "local_rank": _int(environ, "LOCAL_RANK") or 0,
                "local_world_size": local_world,
                "node_rank": _int(environ, "GROUP_RANK") if "GROUP_RANK" in environ else node_rank,
            }
        else:
            ctx = {"rank": node_rank, "world_size": nodes, "local_rank": 0, "local_world_size": 1,
                   "node_rank": node_rank}
        ctx["nodes"] = nodes
        ctx["master_addr"] = environ.get("MASTER_ADDR") or (hosts[0] if hosts else "localhost")
        ctx["master_port"] = _int(environ, "MASTER_PORT") or DEFAULT_MASTER_PORT

        channels = {}
        for ch in _json(environ, "SM_CHANNELS", []) or []:
            path = environ.get(f"SM_CHANNEL_{ch.upper()}")
            if path:
                channels[ch] = path
        for key, path in environ.items():  # channels whose name SM_CHANNELS did not list
            if key.startswith("SM_CHANNEL_") and key != "SM_CHANNELS":
                name = key[len("SM_CHANNEL_"):].lower()
                if not any(c.upper() == name.upper() for c in channels):
                    channels[name] = path
        ctx["channels"] = channels
        if "SM_MODEL_DIR" in environ:
            ctx["model_dir"] = environ["SM_MODEL_DIR"]
        if "SM_OUTPUT_DATA_DIR" in environ:
            ctx["output_dir"] = environ["SM_OUTPUT_DATA_DIR"]

        hps = _json(environ, "UNIJOB_HYPERPARAMETERS", None)
        if hps is None:
            hps = {k: v for k, v in (_json(environ, "SM_HPS", {}) or {}).items() if not k.startswith("sagemaker_")}
        ctx["hyperparameters"] = hps

        ckpt_uri = environ.get("UNIJOB_CHECKPOINT_URI")
        if ckpt_uri:
            ctx["checkpoint_uri"] = ckpt_uri
        if ckpt_uri or "UNIJOB_CHECKPOINT_DIR" in environ:
            ctx["checkpoint_dir"] = environ.get("UNIJOB_CHECKPOINT_DIR") or CHECKPOINT_DIR
        job = environ.get("UNIJOB_JOB_NAME") or environ.get("TRAINING_JOB_NAME")
        if not job:
            job = (_json(environ, "SM_TRAINING_ENV", {}) or {}).get("job_name")
        if job:
            ctx["job_id"] = job
        return ctx
