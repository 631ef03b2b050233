"""The base class of the platform readers :mod:`unijob.runtime` uses inside a running job.

Standard library only: it is imported inside training containers, where pydantic and the cloud
SDKs may be absent or slow to import. Adapters subclass it in their own stdlib-only
``runtime_env.py`` and register it under the ``unijob.runtime_envs`` entry-point group.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Mapping


class RuntimeEnv(abc.ABC):
    """How :mod:`unijob.runtime` reads one platform's environment inside a running job.

    Subclasses must import nothing beyond the standard library: they run inside training
    containers. Register them under the ``unijob.runtime_envs`` entry-point group.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def detect(self, environ: Mapping[str, str]) -> bool:
        """True when ``environ`` is this platform's job environment."""

    @abc.abstractmethod
    def read(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The context fields this platform sets; keys of :class:`unijob.runtime.Context`
        (``rank``, ``world_size``, ``local_rank``, ``local_world_size``, ``node_rank``, ``nodes``,
        ``master_addr``, ``master_port``, ``channels`` (name -> local path), ``output_dir``,
        ``model_dir``, ``checkpoint_dir``, ``checkpoint_uri``, ``hyperparameters``, ``job_id``,
        ``tensorboard_dir``).
        Missing keys fall back to the torchrun-compatible env and then to single-process defaults."""
