"""What training code imports: who am I, where are my inputs, checkpoints and secrets, am I preempted.

::

    from unijob.runtime import context, Checkpointer, preempted, secret

    ctx = context()                      # rank, world_size, master_addr/port, channels, hyperparameters...
    ckpt = Checkpointer(keep=3)          # the job's checkpoint location (UNIJOB_CHECKPOINT_DIR/URI)
    if (info := ckpt.latest()) is not None:
        state = ckpt.load()              # newest good checkpoint, sha256-verified
    for epoch in range(start, ctx.hyperparameters["epochs"]):
        ...
        ckpt.save(blob, step=epoch)      # atomic; only rank 0 writes by default
        if preempted():                  # SIGTERM arrived: the platform's grace period runs now
            sys.exit(143)

The same script runs unchanged under the local target, SageMaker, Vertex AI, Databricks,
Kubernetes, and plain ``python train.py`` (rank 0 of 1).

Importing this package is cheap and imports neither a cloud SDK nor pydantic nor fsspec: the names
below load their module on first use. See :mod:`unijob.runtime.environment`,
:mod:`unijob.runtime.checkpoint`, :mod:`unijob.runtime.preemption` and
:mod:`unijob.runtime.secrets`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unijob.runtime.checkpoint import CheckpointCorrupt, CheckpointInfo, Checkpointer
    from unijob.runtime.environment import Context, context, parse_hyperparameters
    from unijob.runtime.preemption import on_preemption, preempted, preemption_notice
    from unijob.runtime.metrics import log_metrics
    from unijob.runtime.artifacts import model_dir
    from unijob.runtime.secrets import SecretError, secret

_EXPORTS = {
    "Context": "environment",
    "context": "environment",
    "parse_hyperparameters": "environment",
    "Checkpointer": "checkpoint",
    "CheckpointInfo": "checkpoint",
    "CheckpointCorrupt": "checkpoint",
    "preempted": "preemption",
    "on_preemption": "preemption",
    "preemption_notice": "preemption",
    "secret": "secrets",
    "log_metrics": "metrics",
    "model_dir": "artifacts",
    "SecretError": "secrets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unijob.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"unijob.runtime.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
