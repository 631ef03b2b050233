"""Where the server listens, which routes it answers and where the model is: from the environment
each platform sets, overridable by flags.

Sources (first found wins):

=============  =================================================================================
setting        sources
=============  =================================================================================
handler        ``--handler``; ``UNIJOB_HANDLER``
port           ``--port``; ``AIP_HTTP_PORT`` (Vertex); ``SAGEMAKER_BIND_TO_PORT`` (SageMaker
               multi-container); ``PORT`` (Kubernetes convention, set by the unijob manifests);
               8080 (SageMaker's fixed port and Vertex's default)
model          ``--model-dir``; ``UNIJOB_MODEL_DIR``; ``UNIJOB_MODEL_URI`` (unijob's Kubernetes and
               local targets); ``AIP_STORAGE_URI`` (Vertex copies the artifact URI there);
               ``/opt/ml/model`` when it exists (SageMaker extracts ``model.tar.gz`` there)
extra routes   ``AIP_HEALTH_ROUTE`` and ``AIP_PREDICT_ROUTE`` (Vertex), served besides the fixed
               routes
=============  =================================================================================

Sources: SageMaker "Use your own inference code with hosting services"
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html); Vertex AI
"Custom container requirements for prediction"
(https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

SAGEMAKER_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
#: SageMaker real-time endpoints accept payloads up to 6 MB (InvokeEndpoint quota).
DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024


@dataclass
class ServeConfig:
    """Resolved server settings.

    Attributes:
        handler: handler reference (``module:attr``).
        host / port: where to listen.
        model: local directory or URI of the model artifacts, or None.
        health_routes / predict_routes: GET and POST paths answered besides the fixed ones.
        max_payload: request bodies above this many bytes get 413.
        workers: uvicorn worker processes.
        access_log: log every request (uvicorn's access log).
    """

    handler: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    model: Optional[str] = None
    health_routes: list[str] = field(default_factory=list)
    predict_routes: list[str] = field(default_factory=list)
    max_payload: int = DEFAULT_MAX_PAYLOAD
    workers: int = 1
    access_log: bool = False

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, *, handler: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, model: Optional[str] = None,
                 workers: Optional[int] = None, access_log: Optional[bool] = None) -> "ServeConfig":
        """Resolve the settings from flags (the keyword arguments) and ``env`` (default ``os.environ``).

        Raises:
            ValueError: no handler anywhere; a port that is not an integer in 0-65535; a route that
                does not start with ``/``; ``UNIJOB_MAX_PAYLOAD_BYTES`` or the worker count not a
                positive integer.
        """
        env = os.environ if env is None else env
        handler = handler or env.get("UNIJOB_HANDLER")
        if not handler:
            raise ValueError("no handler: pass --handler module:attr or set UNIJOB_HANDLER")
        if port is None:
            for var in ("AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT", "PORT"):
                if env.get(var):
                    try:
                        port = int(env[var])
                    except ValueError:
                        raise ValueError(f"{var}={env[var]!r} is not a port number") from None
                    break
            else:
                port = DEFAULT_PORT
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is outside 0-65535")
        if model is None:
            model = env.get("UNIJOB_MODEL_DIR") or env.get("UNIJOB_MODEL_URI") or env.get("AIP_STORAGE_URI")
            if not model and os.path.isdir(SAGEMAKER_MODEL_DIR):
                model = SAGEMAKER_MODEL_DIR
        health = [r for r in [env.get("AIP_HEALTH_ROUTE")] if r]
        predict = [r for r in [env.get("AIP_PREDICT_ROUTE")] if r]
        for r in health + predict:
            if not r.startswith("/"):
                raise ValueError(f"route {r!r} must start with /")
        max_payload = _positive(env, "UNIJOB_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD)
        if workers is None:
            workers = _positive(env, "UNIJOB_SERVE_WORKERS", 1)
        elif workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        return cls(handler=handler, host=host or env.get("UNIJOB_SERVE_HOST") or "0.0.0.0", port=port,
                   model=model or None, health_routes=health, predict_routes=predict, max_payload=max_payload,
                   workers=workers,
                   access_log=bool(access_log) if access_log is not None else env.get("UNIJOB_ACCESS_LOG") == "1")


def _positive(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{var}={raw!r} must be at least 1")
    return value
