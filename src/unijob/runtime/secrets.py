"""Secrets inside a job: :func:`secret`.

A spec's ``secrets: {NAME: reference}`` reaches the job in one of two ways:

- as the environment variable ``NAME`` itself, set by the platform from its own store
  (Kubernetes ``secretKeyRef``, Databricks ``{{secrets/scope/key}}``) or by the local target
  (``env://VAR`` resolved where the job was submitted);
- as a reference in ``UNIJOB_SECRET_REFS`` (JSON ``{NAME: reference}``) for stores the platform
  cannot inject, resolved here, lazily, on the first ``secret(NAME)``, with the store's SDK:
  ``aws-secretsmanager://NAME-OR-ARN[#json-key]`` (boto3) and
  ``gcp-secretmanager://projects/P/secrets/S[/versions/V]`` (google-cloud-secret-manager).

Values are never logged, and no error message contains one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from typing import Iterator, Mapping, Optional

_cache: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


class SecretError(LookupError):
    """A secret could not be read. The message names the secret and the store, never a value."""


def _refs(environ: Mapping[str, str]) -> dict[str, str]:
    raw = environ.get("UNIJOB_SECRET_REFS")
    if not raw:
        return {}
    try:
        refs = json.loads(raw)
    except ValueError:
        raise SecretError("UNIJOB_SECRET_REFS is not valid JSON (expected {NAME: reference})") from None
    if not isinstance(refs, dict):
        raise SecretError("UNIJOB_SECRET_REFS must be a JSON object {NAME: reference}")
    return {str(k): str(v) for k, v in refs.items()}


def secret(name: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The value of the spec secret ``name`` inside the job.

    Args:
        name: the secret's name in the spec (an environment variable name).
        environ: the environment to read; default ``os.environ``.

    Returns:
        The value (a string; binary AWS secrets are decoded as UTF-8).

    Raises:
        SecretError: not declared (neither ``$NAME`` nor a reference in ``UNIJOB_SECRET_REFS``), the
            store's SDK is missing (the message names the ``pip install`` line), or the store
            refused; the message never contains the value.
    """
    env = os.environ if environ is None else environ
    if env.get(name) is not None:
        return env[name]
    refs = _refs(env)
    ref = refs.get(name)
    if ref is None:
        raise SecretError(
            f"secret '{name}' is not available: no environment variable {name} and no reference for it "
            "in UNIJOB_SECRET_REFS; declare it under 'secrets:' in the job spec")
    if ref.startswith("env://"):
        return _resolve(name, ref, env)
    key = (name, ref)
    with _lock:
        if key in _cache:
            return _cache[key]
    value = _resolve(name, ref, env)
    with _lock:
        _cache[key] = value
    return value


def _resolve(name: str, ref: str, env: Mapping[str, str]) -> str:
    scheme, _, rest = ref.partition("://")
    if scheme == "env":
        if env.get(rest) is None:
            raise SecretError(f"secret '{name}': environment variable {rest} (from env://{rest}) is not set in the job")
        return env[rest]
    if scheme == "aws-secretsmanager":
        return _aws(name, rest)
    if scheme == "gcp-secretmanager":
        return _gcp(name, rest)
    if scheme == "databricks-secret":
        raise SecretError(f"secret '{name}': Databricks secrets reach the job as environment variable {name} "
                          "(the databricks target passes {{secrets/SCOPE/KEY}}); it is not set here")
    if scheme == "k8s-secret":
        raise SecretError(f"secret '{name}': Kubernetes secrets reach the job as environment variable {name} "
                          "(secretKeyRef); it is not set here")
    raise SecretError(f"secret '{name}': unknown reference scheme '{scheme}://'")


def _aws(name: str, rest: str) -> str:
    secret_id, _, json_key = rest.partition("#")
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError:
        raise SecretError(f"secret '{name}' is in AWS Secrets Manager, and reading it needs boto3: "
                          "pip install boto3") from None
    kwargs = {}
    if secret_id.startswith("arn:"):
        parts = secret_id.split(":")
        if len(parts) > 3 and parts[3]:
            kwargs["region_name"] = parts[3]
    try:
        with _quiet("botocore.parsers"):  # logs response bodies, the secret among them, at DEBUG
            resp = boto3.client("secretsmanager", **kwargs).get_secret_value(SecretId=secret_id)
    except Exception as e:  # noqa: BLE001 - the SDK's errors carry no secret value
        raise SecretError(f"secret '{name}': AWS Secrets Manager refused {secret_id}: "
                          f"{e.__class__.__name__}: {e}") from None
    if resp.get("SecretString") is not None:
        value = resp["SecretString"]
    else:
        value = bytes(resp["SecretBinary"]).decode("utf-8")
    return _pick(name, value, json_key)


def _gcp(name: str, rest: str) -> str:
    try:
        from google.cloud import secretmanager  # type: ignore[import-not-found]
    except ImportError:
        raise SecretError(f"secret '{name}' is in Google Secret Manager, and reading it needs "
                          "google-cloud-secret-manager: pip install google-cloud-secret-manager") from None
    resource = rest if "/versions/" in rest else rest.rstrip("/") + "/versions/latest"
    try:
        with _quiet("google.api_core", "google.auth", "grpc", "urllib3"):
            resp = secretmanager.SecretManagerServiceClient().access_secret_version(name=resource)
    except Exception as e:  # noqa: BLE001
        raise SecretError(f"secret '{name}': Google Secret Manager refused {resource}: "
                          f"{e.__class__.__name__}: {e}") from None
    return resp.payload.data.decode("utf-8")


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence DEBUG/INFO records of ``loggers`` (SDK loggers that would log the secret) for a call."""
    saved = []
    for n in loggers:
        lg = logging.getLogger(n)
        saved.append((lg, lg.level))
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def _pick(name: str, value: str, json_key: str) -> str:
    if not json_key:
        return value
    try:
        obj = json.loads(value)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise SecretError(f"secret '{name}': the reference asks for key '{json_key}' but the stored "
                          "secret is not a JSON object") from None
    if json_key not in obj:
        raise SecretError(f"secret '{name}': the stored JSON object has no key '{json_key}' "
                          f"(keys: {', '.join(sorted(map(str, obj)))})") from None
    v = obj[json_key]
    return v if isinstance(v, str) else json.dumps(v)


def _clear_cache() -> None:
    with _lock:
        _cache.clear()
