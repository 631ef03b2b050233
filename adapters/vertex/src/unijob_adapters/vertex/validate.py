"""Vertex request bodies checked by the ``aiplatform_v1`` message types, without importing them at plan time.

Importing ``google.cloud.aiplatform_v1`` takes 1.5-3 s (its package imports every service client,
grpc and aiohttp), which was most of ``unijob plan -t vertex``. The plan only needs the message
*descriptors* of the few types it builds (:data:`ROOTS`), and those are plain protobuf: on first use
they are taken from the installed ``aiplatform_v1`` once and stored as a ``FileDescriptorSet`` in
``<unijob home>/cache/vertex/``, named after the installed google-cloud-aiplatform version. Later
plans load that file into a private ``DescriptorPool`` (protobuf alone imports in ~30 ms), build
the message from the plan's dict (unknown fields, wrong scalar types and unknown enum names raise
as they do with the proto-plus types) and serialize it with ``json_format`` exactly as proto-plus'
``to_json`` does, so the plan's bytes do not change. Without a cache (or when it cannot be written)
the proto-plus types are used directly, as before.

Submit still parses every body with the proto-plus types (:func:`unijob_adapters.vertex.plan.proto_from_body`),
and the test suite checks both paths give identical bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from unijob.errors import NotReady

#: The ``google.cloud.aiplatform.v1`` messages the plans build.
ROOTS = ("CustomJob", "Endpoint", "UploadModelRequest", "DeployModelRequest", "BatchPredictionJob")
PACKAGE = "google.cloud.aiplatform.v1"
INSTALL_HINT = "pip install 'unijob[vertex]'"

_POOL: Any = None  # (pool, {full_name: class}) once loaded in this process


def sdk_location() -> Path:
    """The directory of the installed ``google.cloud.aiplatform_v1`` package, found without
    importing it.

    Raises:
        NotReady: google-cloud-aiplatform is not installed.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("google.cloud.aiplatform_v1")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NotReady("google-cloud-aiplatform is not installed", hint=INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0])


def cache_path() -> Optional[Path]:
    """``<home>/cache/vertex/descriptors-<version>-<key>.binpb`` for the installed SDK, or None
    when its version file cannot be read. The key hashes the package path, the version file's
    mtime and :data:`ROOTS`, so an upgrade or reinstall uses a new file."""
    from unijob.paths import home

    loc = sdk_location()
    try:
        st = (loc / "gapic_version.py").stat()
        text = (loc / "gapic_version.py").read_text()
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    version = m.group(1) if m else "unknown"
    key = hashlib.sha256(f"{loc}\n{st.st_mtime_ns}\n{st.st_size}\n{','.join(ROOTS)}".encode()).hexdigest()[:12]
    return home(create=False) / "cache" / "vertex" / f"descriptors-{version}-{key}.binpb"


def build_descriptor_set() -> bytes:
    """A serialized ``FileDescriptorSet`` of :data:`ROOTS` and every file they depend on
    (dependencies first), taken from the proto-plus types (imports ``aiplatform_v1``: slow)."""
    from google.cloud import aiplatform_v1
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        fds.file.add().MergeFromString(fd.serialized_pb)

    for name in ROOTS:
        add(getattr(aiplatform_v1, name).pb().DESCRIPTOR.file)
    return fds.SerializeToString()


def _load_pool() -> Optional[dict[str, Any]]:
    """``{message full name: protobuf class}`` from the cache (written first if missing), or None
    when there is no usable cache."""
    global _POOL
    if _POOL is not None:
        return _POOL
    path = cache_path()
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        data = build_descriptor_set()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return None  # a read-only home: the proto-plus types, as before
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    _POOL = {f"{PACKAGE}.{n}": message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{n}"))
             for n in ROOTS}
    return _POOL


def _fill(msg: Any, data: Mapping[str, Any], where: str) -> None:
    """Set ``msg``'s fields from a dict as a proto-plus constructor would: snake_case field names,
    nested dicts for messages, enum names or numbers, None for unset.

    Raises:
        ValueError: an unknown field or enum name. TypeError: a value of the wrong type.
    """
    desc = msg.DESCRIPTOR
    for key, value in data.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            raise ValueError(f"Unknown field for {desc.name}: {key} (at {where})")
        if value is None:
            continue
        path = f"{where}.{key}"
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            container = getattr(msg, key)
            value_field = field.message_type.fields_by_name["value"]
            for k, v in dict(value).items():
                if value_field.message_type is not None:
                    _fill(container[k], v, f"{path}[{k!r}]")
                else:
                    container[k] = _scalar(value_field, v, f"{path}[{k!r}]")
        elif field.message_type is not None:
            if repeated:
                container = getattr(msg, key)
                for i, item in enumerate(value):
                    _fill(container.add(), item, f"{path}[{i}]")
            else:
                sub = getattr(msg, key)
                sub.SetInParent()
                _fill(sub, value, path)
        elif repeated:
            getattr(msg, key).extend(_scalar(field, v, f"{path}[{i}]") for i, v in enumerate(value))
        else:
            setattr(msg, key, _scalar(field, value, path))


def _scalar(field: Any, value: Any, where: str) -> Any:
    if field.enum_type is not None and isinstance(value, str):
        ev = field.enum_type.values_by_name.get(value)
        if ev is None:
            raise ValueError(f"{value!r} is not a {field.enum_type.name} (at {where}); expected one of "
                             f"{', '.join(field.enum_type.values_by_name)}")
        return ev.number
    return value


def rest_json(message: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (snake_case, as given to ``aiplatform_v1.<message>(data)``) checked by that
    message type and turned into the REST body (camelCase keys, enum names, int64 as strings,
    fields at their default left out): what proto-plus' ``to_json(use_integers_for_enums=False)``
    gives, parsed back into data.

    Raises:
        NotReady: google-cloud-aiplatform is not installed.
        ValueError, TypeError: ``data`` does not fit the message type (a bug in the plan code).
    """
    pool = _load_pool()
    if pool is None:
        return proto_plus_json(message, data)
    from google.protobuf import json_format

    msg = pool[f"{PACKAGE}.{message}"]()
    _fill(msg, data, message)
    out = json.loads(json_format.MessageToJson(msg, use_integers_for_enums=False, indent=2,
                                               always_print_fields_with_no_presence=False,
                                               preserving_proto_field_name=False))
    _order_maps(msg.DESCRIPTOR, data, out)
    return out


def proto_plus_json(message: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`rest_json` through the proto-plus type itself (imports ``aiplatform_v1``: slow)."""
    try:
        from google.cloud import aiplatform_v1
    except ImportError:
        raise NotReady("google-cloud-aiplatform is not installed", hint=INSTALL_HINT) from None
    cls = getattr(aiplatform_v1, message)
    out = json.loads(cls.to_json(cls(dict(data)), use_integers_for_enums=False,
                                 always_print_fields_with_no_presence=False))
    _order_maps(cls.pb().DESCRIPTOR, data, out)
    return out


def _order_maps(desc: Any, data: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Put the keys of every map field of ``out`` (labels, traffic split) in ``data``'s order.
    protobuf's map iteration order is a per-process hash order, so without this the same plan
    printed its labels in a different order from one run to the next."""
    for key, value in data.items():
        field = desc.fields_by_name.get(key)
        if field is None or value is None or field.json_name not in out or field.message_type is None:
            continue
        got = out[field.json_name]
        if field.message_type.GetOptions().map_entry:
            value_type = field.message_type.fields_by_name["value"].message_type
            out[field.json_name] = {str(k): got[str(k)] for k in value if str(k) in got}
            if value_type is not None:
                for k, v in value.items():
                    if str(k) in got and isinstance(v, Mapping):
                        _order_maps(value_type, v, got[str(k)])
        elif field.is_repeated:
            for item, item_out in zip(value, got):
                if isinstance(item, Mapping) and isinstance(item_out, dict):
                    _order_maps(field.message_type, item, item_out)
        elif isinstance(value, Mapping) and isinstance(got, dict):
            _order_maps(field.message_type, value, got)
