"""pydantic validators of unijob's models, built once per installed version and cached on disk.

Building a pydantic model's validator (its core schema generated in Python, then compiled by
pydantic-core) is most of what ``unijob validate`` spends in unijob's own code, and the first model
of a process also imports pydantic's schema generator and plugin loader. Models whose module calls
:func:`install` are declared with ``defer_build=True``; :func:`install` gives them the core schema,
validator and serializer pydantic built for them in an earlier process, unpickled from
``<unijob home>/cache/models/`` (pydantic-core's ``SchemaValidator`` and ``SchemaSerializer``
pickle as their core schema and are rebuilt from it by pydantic-core, without the schema
generator). Validation, errors, dumps and JSON Schema are those of the same schema, so they do
not change.

Safe against a stale cache: the file's name carries the Python, pydantic and pydantic-core
versions, and the file records the size and modification time of every ``unijob*`` source file
loaded when it was built (the models' modules and all of unijob they import); it is used only if
all still match, as Python checks its ``.pyc`` files. A missing, stale, unreadable or corrupt
cache, a model that does not pickle, or ``UNIJOB_MODEL_CACHE=0``: pydantic builds the models as
usual, and the cache is (re)written atomically when the home is writable. The cache directory is
created with mode 0o700 and a file not owned by the user, or writable by others, is never read
(unpickling runs code, like importing a ``.pyc``).

What :func:`install` sets is what ``pydantic._internal._model_construction.complete_model_class``
sets (``tests/test_modelcache.py`` compares both ways, attribute by attribute, for every cached
model); models with computed or deprecated fields are built by pydantic instead.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

#: bump when the file layout changes
FORMAT = 1


def _enabled() -> bool:
    return os.environ.get("UNIJOB_MODEL_CACHE", "1") != "0"


def _model_files(models: Sequence[Any]) -> list[str]:
    return sorted({getattr(sys.modules.get(m.__module__), "__file__", None) or "?" for m in models})


def cache_file(name: str, models: Sequence[Any]) -> Optional[Path]:
    """``<home>/cache/models/<name>-<where>-py<X.Y>-pydantic<V>-core<V>-f<FORMAT>.pickle``, or None
    without a home; ``<where>`` hashes the paths of the models' modules, so each installation
    (venv, checkout) has its own file."""
    import hashlib

    import pydantic
    import pydantic_core

    from unijob.paths import home

    try:
        base = home(create=False)
    except Exception:  # no per-user directory can be computed: no cache
        return None
    where = hashlib.sha256("\n".join(_model_files(models)).encode()).hexdigest()[:12]
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return base / "cache" / "models" / (f"{name}-{where}-py{py}-pydantic{pydantic.VERSION}-core{pydantic_core.__version__}"
                                        f"-f{FORMAT}.pickle")


def _sources() -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, size) of every loaded ``unijob*`` module's source file."""
    out: dict[str, tuple[int, int]] = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("unijob"):
            continue
        path = getattr(mod, "__file__", None)
        if not path:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _fresh(recorded: dict[str, tuple[int, int]]) -> bool:
    for path, (mtime, size) in recorded.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_mtime_ns, st.st_size) != (mtime, size):
            return False
    return True


def _cacheable(cls: Any) -> bool:
    """No computed or deprecated fields (what install() would otherwise have to set up)."""
    if cls.__pydantic_decorators__.computed_fields:
        return False
    return all(f.deprecated is None for f in cls.__pydantic_fields__.values()) and cls.__pydantic_fields_complete__


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        with open(path, "rb") as f:
            entry = pickle.load(f)
    except Exception:  # missing, unreadable, truncated, or pickled by an incompatible version
        return None
    return entry if isinstance(entry, dict) and entry.get("format") == FORMAT else None


def _install(cls: Any, core_schema: Any, validator: Any, serializer: Any) -> None:
    from functools import partial

    from pydantic._internal._signature import generate_pydantic_signature
    from pydantic._internal._utils import LazyClassAttribute

    config = cls.model_config
    cls.__pydantic_computed_fields__ = {}
    cls.__pydantic_core_schema__ = core_schema
    cls.__pydantic_validator__ = validator
    cls.__pydantic_serializer__ = serializer
    cls.__signature__ = LazyClassAttribute(
        "__signature__",
        partial(generate_pydantic_signature, init=cls.__init__, fields=cls.__pydantic_fields__,
                validate_by_alias=config.get("validate_by_alias", True), extra=config.get("extra")),
    )
    cls.__pydantic_complete__ = True
    cls.__pydantic_on_complete__()


def install(name: str, models: Sequence[type]) -> bool:
    """Complete the deferred pydantic ``models`` from the cache file ``name``; on a miss, build them
    (pydantic's own ``model_rebuild``) and write the file for the next process.

    Args:
        name: the cache file's stem (one per module that calls this, e.g. ``"spec"``).
        models: model classes declared with ``defer_build=True``, dependencies in any order.

    Returns:
        True when the models came from the cache. Never raises for a cache problem: the models are
        then built as usual.
    """
    key = {f"{m.__module__}:{m.__qualname__}" for m in models}
    todo = [m for m in models if not m.__pydantic_complete__]
    if not todo:
        return False
    path = cache_file(name, models) if _enabled() and all(_cacheable(m) for m in todo) else None
    if path is not None:
        entry = _read(path)
        if (entry is not None and set(entry["models"]) == key and set(_model_files(models)) <= set(entry["sources"])
                and _fresh(entry["sources"])):
            for m in todo:
                _install(m, *entry["models"][f"{m.__module__}:{m.__qualname__}"])
            return True
    from unijob import registry

    registry.spare_pydantic_plugin_scan()  # pydantic's first build would look for plugins
    for m in todo:
        m.model_rebuild()
    if path is not None:
        _write(path, models)
    return False


def _write(path: Path, models: Sequence[Any]) -> None:
    entry = {"format": FORMAT, "sources": _sources(),
             "models": {f"{m.__module__}:{m.__qualname__}": (m.__pydantic_core_schema__, m.__pydantic_validator__,
                                                             m.__pydantic_serializer__) for m in models}}
    try:
        data = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)  # a lambda default raises: not cached
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except Exception:  # a read-only home, a model that does not pickle: next time pydantic builds again
        try:
            tmp.unlink()  # type: ignore[possibly-undefined]
        except Exception:
            pass


def install_module(module: str) -> bool:
    """:func:`install` for every pydantic model class defined in the module named ``module`` (call it
    at the end of that module with ``__name__``); the cache file is named after the module."""
    from pydantic import BaseModel

    found = [v for v in vars(sys.modules[module]).values()
             if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == module]
    return install(module, found)
