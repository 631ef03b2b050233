"""Field-by-field comparison of the request a vendor's own SDK sends with the one unijob's plan sends.

Each adapter's ``tests/test_<name>_vendor_sdk.py`` captures both bodies (the SDK against a local
recording server or moto, no network), then::

    d = compare(vendor_body, plan_body)
    assert_explained(d, differ=DIFFER, vendor_only=VENDOR_ONLY, ours_only=OURS_ONLY)

where each of the three dicts maps a field path (``*`` matches any run of characters, everything else
is literal, e.g. ``"Environment.UNIJOB_*"``, ``"InputDataConfig[2].*"``)
to the reason the difference is deliberate. Any other difference fails, and so does a listed
path that no longer differs (the list cannot go stale). Paths join dict keys with ``.`` and list
indexes as ``[i]``: ``tasks[0].new_cluster.autoscale.min_workers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import re
from typing import Any, Mapping


@dataclass
class RequestDiff:
    """Leaf differences between two request bodies.

    Attributes:
        differ: path -> (vendor value, our value), where both set the field to different values.
        vendor_only: path -> value the vendor's SDK sends and unijob does not.
        ours_only: path -> value unijob sends and the vendor's SDK does not.
        same: paths both send with equal values.
    """

    differ: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    vendor_only: dict[str, Any] = field(default_factory=dict)
    ours_only: dict[str, Any] = field(default_factory=dict)
    same: list[str] = field(default_factory=list)


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _leaves(v, _join(path, k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _leaves(v, _join(path, i), out)
    else:
        out[path] = value


def compare(vendor: Any, ours: Any) -> RequestDiff:
    """Compare two JSON-like bodies leaf by leaf (lists by index)."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _leaves(vendor, "", a)
    _leaves(ours, "", b)
    d = RequestDiff()
    for p in sorted(a.keys() | b.keys()):
        if p in a and p in b:
            if a[p] == b[p]:
                d.same.append(p)
            else:
                d.differ[p] = (a[p], b[p])
        elif p in a:
            d.vendor_only[p] = a[p]
        else:
            d.ours_only[p] = b[p]
    return d


def _matches(path: str, pattern: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), path) is not None


def unexplained(found: Mapping[str, Any], explained: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """(paths in ``found`` no pattern of ``explained`` matches, patterns of ``explained`` matching nothing)."""
    left = {p: v for p, v in found.items() if not any(_matches(p, g) for g in explained)}
    stale = [g for g in explained if not any(_matches(p, g) for p in found)]
    return left, stale


def assert_explained(d: RequestDiff, *, differ: Mapping[str, str], vendor_only: Mapping[str, str],
                     ours_only: Mapping[str, str]) -> None:
    """Fail with every unexplained difference and every stale explanation.

    Raises:
        AssertionError: listing them.
    """
    problems = []
    for label, found, explained in (("both set, different", d.differ, differ),
                                    ("only the vendor's SDK sends", d.vendor_only, vendor_only),
                                    ("only unijob sends", d.ours_only, ours_only)):
        left, stale = unexplained(found, explained)
        problems += [f"{label}: {p} = {v!r}" for p, v in left.items()]
        problems += [f"{label}: listed {g!r} no longer differs" for g in stale]
    assert not problems, "unexplained request differences:\n  " + "\n  ".join(problems)


def strict_crd_schema(schema: Any) -> Any:
    """A CustomResourceDefinition's ``openAPIV3Schema`` as the API server's strict field validation
    (``kubectl apply --validate=strict``) sees it: every object with ``properties`` and no
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` rejects unknown fields.
    CEL rules (``x-kubernetes-validations``) are dropped: jsonschema cannot run them."""
    if isinstance(schema, dict):
        out = {k: strict_crd_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-validations")}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_crd_schema(s) for s in schema]
    return schema
