"""The ``databricks.sdk`` request types the plans build with, without importing the SDK at plan time.

``from databricks.sdk.service import jobs`` takes 1.5-2.5 s (``databricks.sdk``'s package imports
every service and its credential providers, and ``jobs``/``compute`` alone define ~1,000
dataclasses), which was most of ``unijob plan -t databricks``. The plans need the *shape* of a few
dozen of those types: on first use a schema of every dataclass and enum of :data:`MODULES` (field
names and kinds, enum members) and the parameters of :data:`APIS` is taken from the installed SDK
once and stored as JSON in ``<unijob home>/cache/databricks/``, named after the installed
databricks-sdk version. Later plans build light stand-ins from it (:func:`service`): classes that take
the same keyword arguments, refuse unknown fields, and whose ``as_dict`` / ``from_dict`` follow the
SDK's generated code (keys in its ``as_dict`` order; ``None`` and empty lists and maps left out; enums as
their values; unknown enum values read as ``None``), with real :class:`enum.Enum` enums. So the plan's
bytes do not change and ``check_submit_body`` still round-trips every task.

Submit converts the body with the SDK's own types (``SubmitTask.from_dict``) and checks it with
them first, and the test suite checks the stand-ins against the SDK on every plan shape.
Without a cache (or when it cannot be written) the SDK's own modules are used, as before.
"""

from __future__ import annotations

import enum
import json
import os
import re
import types
from pathlib import Path
from typing import Any, Optional

from unijob.errors import NotReady

#: SDK modules (``databricks.sdk.service.<name>``) whose types the plans build.
MODULES = ("compute", "jobs", "serving")
#: ``module.Class.method`` whose keyword parameters are a request body's top-level keys.
APIS = ("jobs.JobsAPI.submit", "serving.ServingEndpointsAPI.create")
INSTALL_HINT = "pip install 'unijob[databricks]'"
SCHEMA_VERSION = 3

_SCHEMA: Optional[dict[str, Any]] = None
_MODULES: dict[str, types.SimpleNamespace] = {}


def sdk_location() -> Path:
    """The installed ``databricks.sdk`` package directory, found without importing it.

    Raises:
        NotReady: databricks-sdk is not installed.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("databricks.sdk")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NotReady("databricks-sdk is not installed", hint=INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0])


def cache_path() -> Optional[Path]:
    """``<home>/cache/databricks/schema-<version>-<key>.json``: the key hashes the package path,
    its ``version.py`` mtime and :data:`MODULES`/:data:`APIS`, so an upgrade uses a new file.
    None when the SDK's version file cannot be read."""
    import hashlib

    from unijob.paths import home

    loc = sdk_location()
    try:
        st = (loc / "version.py").stat()
        text = (loc / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    version = m.group(1) if m else "unknown"
    key = hashlib.sha256(f"{loc}\n{st.st_mtime_ns}\n{st.st_size}\n{MODULES}\n{APIS}\n{SCHEMA_VERSION}".encode())
    return home(create=False) / "cache" / "databricks" / f"schema-{version}-{key.hexdigest()[:12]}.json"


# ---- the schema, from the SDK (slow: imports it) ------------------------------------------------

def _kind(tp: Any, modules: dict[str, Any]) -> list:
    """A field type as ``["scalar"]``, ``["ref", "module.Class"]``, ``["list", kind]`` or ``["map", kind]``."""
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0], modules) if len(rest) == 1 else ["scalar"]
    if origin in (list, typing.List):
        return ["list", _kind(args[0], modules) if args else ["scalar"]]
    if origin in (dict, typing.Dict):
        return ["map", _kind(args[1], modules) if len(args) == 2 else ["scalar"]]
    mod = getattr(tp, "__module__", "")
    if isinstance(tp, type) and mod.startswith("databricks.sdk.service."):
        name = mod.rsplit(".", 1)[1]
        if name in modules:
            return ["ref", f"{name}.{tp.__name__}"]
    return ["scalar"]


def build_schema() -> dict[str, Any]:
    """``{"classes": {"module.Class": [[attribute, body key or None, kind], ...]}, "enums":
    {"module.Enum": [[name, value], ...]}, "apis": {"module.Class.method": [param, ...]}}`` from
    the installed SDK (imports it: slow). A class's fields are in its ``as_dict`` order; a field
    ``as_dict`` never sends has no body key."""
    import dataclasses
    import importlib
    import inspect

    modules = {m: importlib.import_module(f"databricks.sdk.service.{m}") for m in MODULES}
    classes: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    for mname, mod in modules.items():
        for cname, obj in vars(mod).items():
            if not isinstance(obj, type) or obj.__module__ != mod.__name__:
                continue
            if issubclass(obj, enum.Enum):
                enums[f"{mname}.{cname}"] = [[m.name, m.value] for m in obj]
            elif dataclasses.is_dataclass(obj):
                hints = {}
                for f in dataclasses.fields(obj):
                    # one by one in the module's namespace: typing.get_type_hints would also look in
                    # the class, where a field named ``compute`` hides the ``compute`` module
                    try:
                        hints[f.name] = eval(f.type, vars(mod)) if isinstance(f.type, str) else f.type  # noqa: S307
                    except Exception:  # noqa: BLE001 - a hint that does not resolve stays a scalar
                        pass
                # as_dict's keys and order, read from its generated code (alphabetical by key;
                # a few keys differ from the attribute: ``global_`` is sent as ``global``)
                pairs = re.findall(r'if self\.(\w+)[^\n]*:\n\s*body\["(\w+)"\]', inspect.getsource(obj.as_dict))
                body = {attr: key for attr, key in pairs}
                names = [f.name for f in dataclasses.fields(obj)]
                order = [a for a, _ in pairs if a in names] + [n for n in names if n not in body]
                classes[f"{mname}.{cname}"] = [[n, body.get(n), _kind(hints.get(n), modules)] for n in order]
    apis = {}
    for ref in APIS:
        mname, cname, meth = ref.split(".")
        apis[ref] = [p for p in inspect.signature(getattr(getattr(modules[mname], cname), meth)).parameters
                     if p != "self"]
    return {"schema": SCHEMA_VERSION, "classes": classes, "enums": enums, "apis": apis}


def schema() -> Optional[dict[str, Any]]:
    """The cached schema (written first if missing), or None when it cannot be cached."""
    global _SCHEMA
    if _SCHEMA is not None:
        return _SCHEMA
    path = cache_path()
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = build_schema()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(tmp, path)
        except OSError:
            return None  # a read-only home: the SDK's own types, as before
    _SCHEMA = data
    return data


# ---- stand-ins ----------------------------------------------------------------------------------

class Struct:
    """Base of the stand-in dataclasses: keyword construction, attribute checks, ``as_dict``,
    ``from_dict`` as the SDK's generated code does them."""

    _name = "Struct"
    _fields: dict[str, tuple[Optional[str], list]] = {}  # attribute -> (body key, kind), in as_dict order
    _resolve: Any = None  # "module.Class" -> stand-in class or Enum

    def __init__(self, **kwargs: Any) -> None:
        for f in self._fields:
            object.__setattr__(self, f, None)
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self._fields:
            raise TypeError(f"{self._name} has no field {key!r}")
        object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields if getattr(self, k) is not None)
        return f"{self._name}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, Any]:
        """The JSON body: fields in declaration order; None, empty lists and maps left out."""
        body: dict[str, Any] = {}
        for f, (key, kind) in self._fields.items():
            v = getattr(self, f)
            if key is None or v is None or (kind[0] in ("list", "map") and not v):
                continue
            body[key] = _dump(v)
        return body

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Struct":
        """Known fields only (as the SDK: the rest is dropped); unknown enum values become None."""
        obj = cls()
        for f, (key, kind) in cls._fields.items():
            if key is not None and key in d:
                object.__setattr__(obj, f, _load(kind, d[key], cls._resolve))
        return obj


def _dump(v: Any) -> Any:
    if isinstance(v, Struct):
        return v.as_dict()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, list):
        return [_dump(x) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v


def _load(kind: list, v: Any, resolve: Any) -> Any:
    if v is None:
        return None
    if kind[0] == "list":
        out = [_load(kind[1], x, resolve) for x in v]
        return [x for x in out if x is not None] if kind[1][0] == "ref" and isinstance(resolve(kind[1][1]), enum.EnumMeta) else out
    if kind[0] == "map":
        return {k: _load(kind[1], x, resolve) for k, x in v.items()}
    if kind[0] == "ref":
        target = resolve(kind[1])
        if isinstance(target, enum.EnumMeta):
            if not v:
                return None
            try:
                return target(v)
            except ValueError:
                return None
        return target.from_dict(v)
    return v


def service(module: str) -> Any:
    """Stand-in of ``databricks.sdk.service.<module>`` (its dataclasses and enums, by name), or
    None when there is no cached schema. Types are made on first access."""
    if module in _MODULES:
        return _MODULES[module]
    data = schema()
    if data is None:
        return None
    made: dict[str, Any] = {}

    def resolve(ref: str) -> Any:
        if ref not in made:
            if ref in data["enums"]:
                made[ref] = enum.Enum(ref.split(".")[1], [tuple(m) for m in data["enums"][ref]], module=__name__)
            elif ref in data["classes"]:
                made[ref] = type(ref.split(".")[1], (Struct,), {
                    "_name": ref.split(".")[1], "_fields": {f: (key, k) for f, key, k in data["classes"][ref]},
                    "_resolve": staticmethod(resolve)})
            else:
                raise AttributeError(f"databricks.sdk.service.{ref} is not a dataclass or enum")
        return made[ref]

    for name in MODULES:
        ns = _LazyModule(name, resolve)
        _MODULES[name] = ns
    return _MODULES[module]


class _LazyModule(types.SimpleNamespace):
    def __init__(self, name: str, resolve: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_module", name)
        object.__setattr__(self, "_resolve_ref", resolve)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        value = self._resolve_ref(f"{self._module}.{attr}")
        object.__setattr__(self, attr, value)
        return value


def api_params(ref: str, *, real: bool = False) -> set[str]:
    """The keyword parameters of ``ref`` (one of :data:`APIS`), from the cache (unless ``real``)
    or the SDK."""
    data = None if real else schema()
    if data is not None:
        return set(data["apis"][ref])
    import importlib
    import inspect

    mname, cname, meth = ref.split(".")
    mod = importlib.import_module(f"databricks.sdk.service.{mname}")
    return set(inspect.signature(getattr(getattr(mod, cname), meth)).parameters) - {"self"}
