"""One online prediction on a deployed Vertex AI endpoint: ``PredictionService.Predict``
(``POST /v1/{endpoint}:predict``, REST transport) with Vertex's envelope
``{"instances": [...], "parameters": ...}``.

The variant that answered is the response's ``deployedModelId`` mapped back to the variant name
through the handle (:mod:`.endpoints` gives deployed model ids ``"1"``, ``"2"``... in variant order).

No per-request variant: ``aiplatform_v1`` (google-cloud-aiplatform 2.7) has no field that picks a
deployed model on ``PredictRequest`` (endpoint, instances, parameters, labels),
``RawPredictRequest`` (endpoint, http_body) or ``DirectPredictRequest`` (endpoint, inputs,
parameters); only ``ExplainRequest.deployed_model_id`` does, and explain serves explanations of
models deployed with an explanation spec, not plain predictions. Vertex routes each request by the
endpoint's ``trafficSplit``, so ``variant`` is a UsageError pointing at the traffic split.

Values cross ``google.protobuf.Value``, whose numbers are doubles: an integer prediction comes
back as a float (``1`` -> ``1.0``).
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Any, Mapping, Optional

from unijob.contract import EndpointHandle, InvokeResult, encode_payload
from unijob.errors import NotFound, TargetError, UsageError

ENVELOPE_KEYS = ("instances", "parameters")


def envelope(payload: Any) -> dict[str, Any]:
    """Check that ``payload`` is Vertex's request envelope and return it.

    Raises:
        UsageError: not a JSON object with an ``instances`` list (and at most ``parameters``
            besides), or not JSON-serialisable (NaN and Infinity included).
    """
    encode_payload(payload)
    if not isinstance(payload, dict):
        raise UsageError('Vertex AI predicts on the envelope {"instances": [...]} (optionally with "parameters"); '
                         f"got a JSON {_kind(payload)}")
    for key in payload:
        if key not in ENVELOPE_KEYS:
            close = difflib.get_close_matches(str(key), ENVELOPE_KEYS, n=1)
            raise UsageError(f"unknown key '{key}' in the payload: Vertex AI takes instances and parameters"
                             + (f" (did you mean '{close[0]}'?)" if close else ""))
    if "instances" not in payload:
        raise UsageError('the payload has no "instances": Vertex AI predicts on {"instances": [...]}')
    if not isinstance(payload["instances"], list):
        raise UsageError(f'"instances" must be a JSON list, got a JSON {_kind(payload["instances"])}')
    return payload


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def invoke(conn: Any, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
           timeout: float = 60.0) -> InvokeResult:
    """Predict on the endpoint of ``handle``.

    Args:
        conn: a :class:`unijob_adapters.vertex.client.Connection` for the handle's project/location.
        handle: from :func:`unijob_adapters.vertex.endpoints.deploy` (``native_id`` is the endpoint's
            resource name; ``extra["variants"]`` maps variant name -> deployed model id).
        payload: ``{"instances": [...]}``, optionally with ``"parameters"``.
        variant: must be None (Vertex has no per-request variant; see the module docstring).
        timeout: seconds per attempt; transient errors (429, 5xx) are retried with the
            connection's backoff for at most three times ``timeout`` in all.

    Returns:
        ``{"predictions": [...]}`` (plus ``"metadata"`` when the model sent some), the variant
        that answered (None when the deployed model id is not one of the handle's), the wall time
        in seconds.

    Raises:
        UsageError: ``variant`` given; the payload is not the envelope.
        NotFound: no such endpoint.
        TargetError: Vertex answered an error (HTTP status and message), or no answer in time.
    """
    if variant is not None:
        raise UsageError(
            f"Vertex AI cannot send one request to variant '{variant}': its predict API has no per-request "
            "deployed model (requests follow the endpoint's traffic split). Route traffic to it with "
            f"`unijob traffic {handle.name} {variant}=100`, or invoke without a variant")
    if timeout <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout}")
    body = envelope(payload)
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform_v1 as aip

    request = aip.PredictRequest.from_json(json.dumps(body), ignore_unknown_fields=False)
    request.endpoint = handle.native_id
    retry = conn.retry.with_timeout(min(conn.policy.deadline, 3 * timeout))
    start = time.perf_counter()
    try:
        resp = retry(lambda: conn.prediction.predict(request=request, timeout=timeout))()
    except gexc.NotFound as e:
        raise NotFound(f"Vertex AI has no endpoint {handle.native_id}: {_message(e)}") from None
    except gexc.RetryError as e:
        raise TargetError(f"endpoint {handle.name}: Vertex AI kept failing transiently: {e.cause}") from None
    except gexc.GoogleAPICallError as e:
        raise TargetError(f"endpoint {handle.name}: Vertex AI answered HTTP {e.code}: {_message(e)}") from None
    except Exception as e:
        if _is_timeout(e):
            raise TargetError(f"endpoint {handle.name} did not answer within {timeout:g} s") from None
        raise
    latency = time.perf_counter() - start
    data = json.loads(aip.PredictResponse.to_json(resp))
    out: dict[str, Any] = {"predictions": data.get("predictions", [])}
    if "metadata" in data and data["metadata"] is not None:
        out["metadata"] = data["metadata"]
    return InvokeResult(body=out, variant=variant_of(handle.extra.get("variants") or {}, resp.deployed_model_id),
                        latency_seconds=latency)


def variant_of(variants: Mapping[str, str], deployed_model_id: str) -> Optional[str]:
    """The variant name whose deployed model id is ``deployed_model_id``, else None."""
    return next((name for name, did in variants.items() if did == deployed_model_id), None)


def _message(exc: Any) -> str:
    """The error's own message: ``error.message`` of the REST answer (api_core prefixes
    ``exc.message`` with the method and URL)."""
    try:
        return str(exc.response.json()["error"]["message"])
    except Exception:
        return str(exc.message)


def _is_timeout(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - google-auth's REST transport depends on requests
        return False
    return isinstance(exc, requests.exceptions.Timeout)
