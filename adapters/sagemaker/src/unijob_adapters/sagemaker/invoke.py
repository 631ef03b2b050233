"""One JSON request to a deployed SageMaker endpoint: ``sagemaker-runtime`` InvokeEndpoint.

The payload is any JSON value, sent as is (``ContentType`` and ``Accept`` ``application/json``);
``variant`` becomes ``TargetVariant``. The answer's body is parsed as JSON and the variant that
served it is the ``InvokedProductionVariant`` field (header ``X-Amzn-Invoked-Production-Variant``).

References (SageMaker Runtime API Reference "InvokeEndpoint", and botocore's service model for
``sagemaker-runtime``, read 2026-11-21):

- ``Body`` is at most 6 MB (6,291,456 bytes).
- ``ModelError`` (HTTP 424): the container answered an error; its status code, message and
  CloudWatch log stream are ``OriginalStatusCode``, ``OriginalMessage`` and ``LogStreamArn``.
- ``ValidationError`` (HTTP 400): a bad request; for an endpoint that does not exist the message
  is "Endpoint NAME of account ACCOUNT not found.".
- ``ModelNotReadyException`` (429), ``ServiceUnavailable`` (503), ``InternalFailure`` (500),
  ``InternalDependencyException`` (530).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Optional

from unijob.contract import EndpointHandle, InvokeResult, encode_payload
from unijob.errors import NotFound, TargetError, UnijobError, UsageError

from .client import client, error_code, error_message, not_found, wrap

#: InvokeEndpoint's ``Body`` limit in bytes (botocore's sagemaker-runtime model: ``max 6291456``).
MAX_PAYLOAD = 6 * 1024 * 1024
#: At most this many attempts per invocation (botocore's retries on throttling and 5xx), so that a
#: timed-out prediction costs at most this many ``timeout`` periods.
MAX_ATTEMPTS = 3
JSON = "application/json"


def encode(payload: Any) -> bytes:
    """``payload`` as UTF-8 JSON bytes.

    Raises:
        UsageError: not JSON-serialisable (or NaN/Infinity), or above :data:`MAX_PAYLOAD` bytes.
    """
    body = encode_payload(payload)
    if len(body) > MAX_PAYLOAD:
        raise UsageError(f"the payload is {len(body)} bytes; SageMaker's InvokeEndpoint takes at most "
                         f"{MAX_PAYLOAD} bytes (6 MB)")
    return body


def invoke(handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
           timeout: float = 60.0) -> InvokeResult:
    """Send ``payload`` to the endpoint of ``handle`` and parse the JSON answer.

    Args:
        handle: from :func:`unijob_adapters.sagemaker.endpoints.deploy` (``extra`` holds the region,
            the retry settings and the variant names).
        payload: any JSON value (``{"instances": [...]}`` for a unijob handler).
        variant: a production variant name to pin the request to (``TargetVariant``).
        timeout: seconds to wait for each attempt's answer; at most :data:`MAX_ATTEMPTS` attempts.

    Returns:
        The parsed body, the variant that answered, and the wall time in seconds.

    Raises:
        UsageError: the payload is not JSON or too large; ``variant`` is not one of the endpoint's.
        NotFound: SageMaker has no such endpoint.
        TargetError: the container answered an error (``ModelError``: its status and message),
            SageMaker refused (code, HTTP status, message), no answer within ``timeout``, or an
            answer that is not JSON.
        NotReady: no AWS credentials.
    """
    body = encode(payload)
    known = list(handle.extra.get("variants") or [])
    if variant is not None and known and variant not in known:
        raise UsageError(f"unknown variant '{variant}'; endpoint {handle.name} has {', '.join(known)}")
    if timeout <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout}")
    kw: dict[str, Any] = {"EndpointName": handle.name, "Body": body, "ContentType": JSON, "Accept": JSON}
    if variant is not None:
        kw["TargetVariant"] = variant
    rt = client("sagemaker-runtime", handle.extra["region"], retry_mode=handle.extra.get("retry_mode", "standard"),
                max_attempts=min(int(handle.extra.get("max_attempts", MAX_ATTEMPTS)), MAX_ATTEMPTS),
                read_timeout=float(timeout))
    start = time.perf_counter()
    try:
        resp = rt.invoke_endpoint(**kw)
        raw = resp["Body"].read()
    except Exception as e:
        raise error(e, handle.name, timeout) from None
    latency = time.perf_counter() - start
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        snippet = raw[:200].decode("utf-8", "replace")
        raise TargetError(f"endpoint {handle.name} answered {resp.get('ContentType') or 'a body'} that is not "
                          f"JSON: {snippet!r}") from None
    return InvokeResult(body=value, variant=resp.get("InvokedProductionVariant") or None, latency_seconds=latency)


def error(exc: BaseException, endpoint: str, timeout: float) -> UnijobError:
    """The unijob error for a failed InvokeEndpoint (no payload in it)."""
    code = error_code(exc)
    resp = getattr(exc, "response", None) or {}
    http = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "ModelError":
        status = resp.get("OriginalStatusCode")
        text = resp.get("OriginalMessage") or error_message(exc)
        logs = resp.get("LogStreamArn")
        return TargetError(f"endpoint {endpoint}: the model container answered HTTP {status}: {text}",
                           hint=f"container logs: {logs}" if logs else None)
    if code and not_found(exc) and re.search(r"\bendpoint\b.*\bnot found\b", error_message(exc), re.I):
        return NotFound(f"SageMaker has no endpoint {endpoint}: {error_message(exc)}")
    if code:
        return TargetError(f"endpoint {endpoint}: {code} (HTTP {http}): {error_message(exc)}")
    if type(exc).__name__ in ("ReadTimeoutError", "ConnectTimeoutError"):
        return TargetError(f"endpoint {endpoint} did not answer within {timeout:g} s")
    return wrap(exc, f"invoking endpoint {endpoint}")
