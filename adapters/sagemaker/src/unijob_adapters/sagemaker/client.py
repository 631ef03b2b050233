"""boto3 clients for the adapter, created on first use (importing this module imports no SDK).

Retries: botocore's ``standard`` (default) or ``adaptive`` retry mode through
``botocore.config.Config(retries=...)``. Endpoints: boto3's own resolution, so ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_SAGEMAKER``...) points every client at a local server such as moto's.
"""

from __future__ import annotations

import os
import re
from typing import Any

from unijob.errors import NotReady, TargetError

INSTALL_HINT = "pip install 'unijob[sagemaker]'"
_SESSIONS: dict[tuple, Any] = {}


def boto3_module():
    """``boto3``, or NotReady with the install line."""
    try:
        import boto3
    except ImportError:
        raise NotReady("boto3 is not installed", hint=INSTALL_HINT) from None
    return boto3


def client(service: str, region: str, *, retry_mode: str = "standard", max_attempts: int = 8,
           read_timeout: float | None = None) -> Any:
    """A boto3 client for ``service`` in ``region`` with botocore retries configured.

    Args:
        read_timeout: seconds to wait for each answer (and at most that, capped at botocore's
            60 s default, to connect); ``None`` keeps botocore's defaults (60 s each).

    Raises:
        NotReady: boto3 missing.
    """
    boto3 = boto3_module()
    from botocore.config import Config

    timeouts = {} if read_timeout is None else {"read_timeout": read_timeout,
                                                "connect_timeout": min(read_timeout, 60.0)}
    cfg = Config(retries={"mode": retry_mode, "total_max_attempts": max_attempts}, user_agent_extra="unijob",
                 **timeouts)
    key = (region, os.environ.get("AWS_PROFILE"), os.environ.get("AWS_ENDPOINT_URL"),
           os.environ.get("AWS_ACCESS_KEY_ID"))
    session = _SESSIONS.get(key)
    if session is None:  # one session per region/profile: service models load once per process
        session = _SESSIONS[key] = boto3.session.Session(region_name=region)
    return session.client(service, config=cfg)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Message", "")) or str(exc)


def already_exists(exc: BaseException) -> bool:
    """True for the errors SageMaker returns when a resource of that name exists."""
    code, msg = error_code(exc), error_message(exc).lower()
    return code in ("ResourceInUse", "ResourceInUseException") or (
        code in ("ValidationException", "ValidationError") and ("already exist" in msg or "existing" in msg))


def not_found(exc: BaseException) -> bool:
    """True for SageMaker's "no such resource" answers."""
    code, msg = error_code(exc), error_message(exc).lower()
    return code in ("ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException") or (
        code in ("ValidationException", "ValidationError")
        and ("could not find" in msg or "not found" in msg or "does not exist" in msg
             or re.search(r"\bno .*\bfound\b", msg) is not None))


def wrap(exc: BaseException, doing: str) -> TargetError | NotReady:
    """A user-facing error for a failed call (no request data, so no secrets)."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
        return NotReady(f"{doing}: {exc}", hint="configure AWS credentials (aws configure, AWS_PROFILE, or env vars)")
    code = error_code(exc)
    return TargetError(f"{doing}: {code + ': ' if code else ''}{error_message(exc)}")
