"""The job spec's scalar field types and the base model every section shares: durations (seconds),
URIs, accelerators, secret references and the name patterns (:mod:`unijob.spec` uses them; see its
docstring for units and defaults)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from unijob import accelerators as _acc

# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
                          r"(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(value: Any) -> Any:
    """``90m``, ``4h``, ``1d``, ``1h30m``, ``3600`` or ``"3600s"`` -> seconds (int).

    Raises:
        PydanticCustomError: anything else (reported as a spec error on the field).
    """
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration such as 90m, 4h, 1d or seconds")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        if m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return int(round(d * 86400 + h * 3600 + mi * 60 + s))
    raise PydanticCustomError(
        "duration", "expected a duration such as 90m, 4h, 1d or a number of seconds, got {value!r}",
        {"value": value},
    )


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*d)?\s*(\d+(\.\d+)?\s*h)?\s*(\d+(\.\d+)?\s*m)?\s*(\d+(\.\d+)?\s*s?)?\s*$"},
    ],
    "description": "seconds, or a duration such as 90m, 4h, 1d",
}
Duration = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA), Field(ge=1)]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Label keys and values that Vertex, GCP, Kubernetes and AWS tags all accept.
LABEL_RE = r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
CHANNEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # SageMaker ChannelName: [A-Za-z0-9\.\-_]+

#: Secret reference schemes and what follows the scheme.
SECRET_SCHEMES: dict[str, str] = {
    "env": "env://VAR (an environment variable where the job is submitted)",
    "aws-secretsmanager": "aws-secretsmanager://NAME-OR-ARN[#json-key]",
    "gcp-secretmanager": "gcp-secretmanager://projects/P/secrets/S[/versions/V]",
    "databricks-secret": "databricks-secret://SCOPE/KEY",
    "k8s-secret": "k8s-secret://NAME/KEY",
}

#: URI schemes accepted for data locations (inputs, output, checkpoints, models).
URI_SCHEMES = ("file", "s3", "gs", "dbfs", "pvc", "http", "https", "hf", "models", "runs", "uc")


class _Model(BaseModel):
    # defer_build: unijob.spec completes every spec model at once, from the cache (unijob.modelcache)
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=False, defer_build=True)


def _check_uri(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("uri", "expected a URI or a path")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):  # a NUL ends a path in every OS call
        raise PydanticCustomError("uri", "a URI or path holds no control characters (found {char})",
                                  {"char": repr(next(c for c in value if ord(c) < 32 or ord(c) == 127))})
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in URI_SCHEMES:
            raise PydanticCustomError(
                "uri", "unsupported URI scheme '{scheme}://'; expected a local path or one of {schemes}",
                {"scheme": scheme, "schemes": ", ".join(f"{s}://" for s in URI_SCHEMES)},
            )
    return value


Uri = Annotated[str, BeforeValidator(_check_uri)]


def _check_accelerator(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "cpu")):
        return None
    if not isinstance(v, str):
        raise PydanticCustomError("accelerator", "expected TYPE[:COUNT] such as 'H100:8' or 'L4'")
    try:
        return str(_acc.parse(v))
    except _acc.AcceleratorError as e:
        ctx = {"suggestion": e.suggestion} if e.suggestion else {}
        raise PydanticCustomError("accelerator", str(e), ctx) from None


AcceleratorStr = Annotated[Optional[str], BeforeValidator(_check_accelerator)]


def _check_secret_ref(value: Any) -> Any:
    # The value may be a real secret pasted by mistake: never echo it.
    if isinstance(value, str) and "://" in value:
        scheme, rest = value.split("://", 1)
        if scheme in SECRET_SCHEMES and rest:
            return value
        if scheme in SECRET_SCHEMES:
            raise PydanticCustomError("secret_ref", "empty secret reference; expected {form}",
                                      {"form": SECRET_SCHEMES[scheme]})
    raise PydanticCustomError(
        "secret_ref",
        "expected a secret reference, not a value (the value is not shown); use one of: {forms}",
        {"forms": "; ".join(SECRET_SCHEMES.values())},
    )


SecretRef = Annotated[str, BeforeValidator(_check_secret_ref)]
