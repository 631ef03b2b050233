"""Adapter discovery through the ``unijob.adapters`` entry-point group.

Listing targets reads package metadata only; nothing is imported until a target is used, and
even then only the adapter module (adapters import their cloud SDK inside methods). A broken
adapter produces a warning and is skipped; it never takes the CLI down.

Entry points are read once per process by :func:`entry_points`, straight from each installed
distribution's ``entry_points.txt`` on ``sys.path`` (~2 ms for 200 distributions), with
:func:`importlib.metadata.entry_points`' rules (the first distribution of a name on ``sys.path``
wins). ``importlib.metadata`` itself scans every distribution's metadata again on each call
(10-20 ms here) and is used only where this fast path cannot see everything: a zip or egg on
``sys.path``, or a meta-path finder of its own (see :func:`_fast_scan_applies`). Nothing is cached
on disk, so nothing can go stale.

Third-party adapters register themselves in their own ``pyproject.toml``::

    [project.entry-points."unijob.adapters"]
    mycloud = "unijob_mycloud.adapter:MyCloudAdapter"
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from typing import TYPE_CHECKING, Any

from unijob.errors import NotReady, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from unijob.contract import Adapter

GROUP = "unijob.adapters"
RUNTIME_GROUP = "unijob.runtime_envs"
#: optional: target name -> its options model (``module:Class``), so that checking a spec's
#: ``targets`` blocks imports each adapter's options module instead of the whole adapter
OPTIONS_GROUP = "unijob.options"

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


def _fast_scan_applies() -> bool:
    """Whether every distribution ``importlib.metadata`` would find is a ``*.dist-info`` or
    ``*.egg-info`` directory in a ``sys.path`` directory (the only finder is the standard PathFinder
    and no ``sys.path`` entry is a zip file or an egg)."""
    import importlib.machinery

    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder:
            return False
    return not any(entry.lower().endswith(".egg") or os.path.isfile(entry) for entry in sys.path)


def _scan_entry_points() -> dict[str, list[tuple[str, str]]]:
    """group -> [(name, value)] of every installed distribution, in ``sys.path`` order, each
    distribution name once (the first on ``sys.path``), as :func:`importlib.metadata.entry_points`
    selects them (``Lookup``, ``_unique`` and ``Sectioned`` in CPython's importlib/metadata)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for entry in sys.path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            name = re.sub(r"[-_.]+", "_", low.rpartition(".")[0].partition("-")[0])
            if name in seen:
                continue
            seen.add(name)
            try:
                with open(os.path.join(entry or ".", child, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):  # an .egg-info file, or no entry points
                continue
            group = None
            for line in map(str.strip, text.splitlines()):
                if not line or line.startswith("#"):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    group = line.strip("[]")
                elif group is not None:
                    key, _, value = line.partition("=")
                    groups.setdefault(group, []).append((key.strip(), value.strip()))
    return groups


@functools.lru_cache(maxsize=None)
def _all_entry_points() -> dict[str, list[tuple[str, str]]]:
    return _scan_entry_points()


@functools.lru_cache(maxsize=None)
def entry_points(group: str) -> tuple[tuple[str, str], ...]:
    """((name, ``module:attr``), ...) of the installed entry points of ``group``, read once per process.

    The same entry points, in the same order, as ``importlib.metadata.entry_points(group=group)``
    gives at the time of the first call (distributions installed later in the same process are
    not seen).
    """
    if _fast_scan_applies():
        return tuple(_all_entry_points().get(group, ()))
    from importlib import metadata

    return tuple((ep.name, ep.value) for ep in metadata.entry_points(group=group))


def spare_pydantic_plugin_scan() -> None:
    """Tell pydantic that no pydantic plugin is installed, when none is, before its first model.

    pydantic looks for plugins (the ``pydantic`` entry-point group) when it builds its first model,
    with ``importlib.metadata``: 10-20 ms here, to find none. When :func:`entry_points` finds none
    either (the same selection), this sets pydantic's plugin cache to the empty result its own scan
    would give (``pydantic.plugin._loader._plugins``; a private name, checked in
    ``tests/test_registry_entry_points.py``, so a pydantic that renames it only loses the saving).
    With a plugin installed, or once pydantic has loaded its plugins, nothing changes;
    ``PYDANTIC_DISABLE_PLUGINS`` is honoured as before (pydantic checks it first).
    """
    if entry_points("pydantic"):
        return
    try:
        from pydantic.plugin import _loader
    except ImportError:
        return
    if getattr(_loader, "_plugins", False) is None and not getattr(_loader, "_loading_plugins", True):
        _loader._plugins = {}


@functools.lru_cache(maxsize=None)
def _entry_points() -> dict[str, str]:
    found = dict(_BUILTIN)
    for name, value in entry_points(GROUP):
        found[name] = value
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
    try:
        obj = _load(eps[name])
    except Exception as e:  # a broken third-party adapter must not crash the CLI
        warnings.warn(f"unijob: adapter '{name}' ({eps[name]}) failed to load: {e!r}", RuntimeWarning, stacklevel=2)
        raise NotReady(f"adapter '{name}' failed to load: {e.__class__.__name__}: {e}",
                       hint=f"reinstall it: pip install --force-reinstall {KNOWN_TARGETS.get(name, name)}") from None
    return obj  # type: ignore[return-value]


def get(name: str) -> "Adapter":
    """A fresh instance of the adapter registered as ``name`` (see :func:`adapter_class`)."""
    return adapter_class(name)()


def options_model(name: str) -> "type[BaseModel]":
    """The pydantic options model of target ``name``: from the ``unijob.options`` entry point
    when the adapter's distribution registers one (its options module alone is imported: ~6 ms
    against ~25 ms for all of an adapter's modules, for each target a spec names), else the
    adapter class's ``options_model`` (imports the adapter, not its SDK).

    Raises:
        UsageError, NotReady: as :func:`adapter_class`.
    """
    value = dict(entry_points(OPTIONS_GROUP)).get(name)
    if value is not None and name in _entry_points():
        try:
            return _load(value)
        except Exception:  # a broken entry point: the adapter itself says what is wrong
            pass
    return adapter_class(name).options_model


def _load(value: str) -> Any:
    """The object an entry point's value ``module:attr.path`` names (imports ``module``)."""
    import importlib

    module, _, attr = value.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def runtime_envs() -> list[str]:
    """``module:Class`` of every registered :class:`unijob.contract.RuntimeEnv`."""
    return [value for _, value in entry_points(RUNTIME_GROUP)]
