"""Adapter discovery through the ``unijob.adapters`` entry-point group.

Listing targets reads package metadata only; nothing is imported until a target is used, and
even then only the adapter module (adapters import their cloud SDK inside methods). A broken
adapter produces a warning and is skipped; it never takes the CLI down.

Third-party adapters register themselves in their own ``pyproject.toml``::

    [project.entry-points."unijob.adapters"]
    mycloud = "unijob_mycloud.adapter:MyCloudAdapter"
"""

from __future__ import annotations

import functools
import warnings
from importlib import metadata
from typing import TYPE_CHECKING

from unijob.errors import NotReady, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from unijob.contract import Adapter

GROUP = "unijob.adapters"
RUNTIME_GROUP = "unijob.runtime_envs"

#: Targets unijob's own project ships, and how to install each one.
KNOWN_TARGETS: dict[str, str] = {
    "local": "unijob",
    "sagemaker": "'unijob[sagemaker]'",
    "vertex": "'unijob[vertex]'",
    "databricks": "'unijob[databricks]'",
    "kubernetes": "'unijob[kubernetes]'",
    "slurm": "'unijob[slurm]'",
    "ray": "'unijob[ray]'",
}

# The local target ships with the core; it is found even without installed metadata.
_BUILTIN = {"local": "unijob.local.adapter:LocalAdapter"}


@functools.lru_cache(maxsize=None)
def _entry_points() -> dict[str, str]:
    found = dict(_BUILTIN)
    for ep in metadata.entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def names() -> list[str]:
    """Installed target names (entry-point names), without importing any adapter."""
    return sorted(_entry_points())


def describe() -> dict[str, str]:
    """name -> ``module:Class`` of every installed adapter."""
    return dict(_entry_points())


@functools.lru_cache(maxsize=None)
def adapter_class(name: str) -> "type[Adapter]":
    """The adapter class registered as ``name``.

    Raises:
        UsageError: no such target (with a did-you-mean).
        NotReady: the target is known but not installed, or its module fails to import.
    """
    eps = _entry_points()
    if name not in eps:
        import difflib

        if name in KNOWN_TARGETS:
            raise NotReady(f"target '{name}' is not installed", hint=f"pip install {KNOWN_TARGETS[name]}")
        close = difflib.get_close_matches(name, list(eps) + list(KNOWN_TARGETS), n=1)
        raise UsageError(f"unknown target '{name}'; installed: {', '.join(sorted(eps))}",
                         hint=f"did you mean '{close[0]}'?" if close else None)
    module, _, attr = eps[name].partition(":")
    try:
        import importlib

        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # a broken third-party adapter must not crash the CLI
        warnings.warn(f"unijob: adapter '{name}' ({eps[name]}) failed to load: {e!r}", RuntimeWarning, stacklevel=2)
        raise NotReady(f"adapter '{name}' failed to load: {e.__class__.__name__}: {e}",
                       hint=f"reinstall it: pip install --force-reinstall {KNOWN_TARGETS.get(name, name)}") from None
    return obj  # type: ignore[return-value]


def get(name: str) -> "Adapter":
    """A fresh instance of the adapter registered as ``name`` (see :func:`adapter_class`)."""
    return adapter_class(name)()


def options_model(name: str) -> "type[BaseModel]":
    """The pydantic options model of target ``name`` (imports the adapter, not its SDK)."""
    return adapter_class(name).options_model


def runtime_envs() -> list[str]:
    """``module:Class`` of every registered :class:`unijob.contract.RuntimeEnv`."""
    return [ep.value for ep in metadata.entry_points(group=RUNTIME_GROUP)]
