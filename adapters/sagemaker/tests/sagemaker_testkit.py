"""Helpers shared by the SageMaker adapter's tests (imported by conftest and the test modules)."""

from __future__ import annotations

import re
from pathlib import Path

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def boto3_client(service: str):
    import boto3

    return boto3.session.Session(region_name=REGION).client(service)


def validate_against_model(service: str, operation: str, params: dict) -> None:
    """Check ``params`` with botocore's ParamValidator (types, required members, minima) and
    additionally the maxima and (where Python's re can read them) patterns of the service model.

    Raises:
        AssertionError: with every problem found.
    """
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    _walk(shape, params, operation, problems)
    assert not problems, "\n".join(problems)


def _walk(shape, value, path, problems):
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                _walk(shape.members[k], v, f"{path}.{k}", problems)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items > max {meta['max']}")
        for i, v in enumerate(value):
            _walk(shape.member, v, f"{path}[{i}]", problems)
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} entries > max {meta['max']}")
        for k, v in value.items():
            _walk(shape.key, k, f"{path}<key {k}>", problems)
            _walk(shape.value, v, f"{path}[{k}]", problems)
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} chars > max {meta['max']}")
        pat = meta.get("pattern")
        if pat and "\\p" not in pat:
            try:
                ok = re.fullmatch(pat, value) is not None
            except re.error:  # a Java-style pattern Python's re cannot read
                ok = True
            if not ok:
                problems.append(f"{path}: {value!r} does not match {pat}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.enum}")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            problems.append(f"{path}: {value} > max {meta['max']}")


def make_spec(tmp_path: Path, **over):
    """A script JobSpec whose code lives in ``tmp_path/code`` (validated with base_dir=tmp_path)."""
    from unijob.spec import JobSpec

    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("print('hello from train.py')\n")
    (code / "util.py").write_text("X = 1\n")
    data = {
        "name": "ranker",
        "script": "code/train.py",
        "labels": {"team": "search"},
        "resources": {"accelerator": "A100:8", "nodes": 2},
        "spot": {"policy": "spot", "max_wait": "10h", "max_restarts": 2},
        "max_run": "6h",
        "checkpoint": {"uri": "s3://bucket/ckpts/ranker"},
        "inputs": {"train": "s3://bucket/data/train", "val": "s3://bucket/data/val"},
        "output": "s3://bucket/out",
        "hyperparameters": {"lr": 0.001, "epochs": 3, "amp": True, "opt": "adamw"},
        "env": {"LOG_LEVEL": "info"},
        "secrets": {"HF_TOKEN": "aws-secretsmanager://prod/hf-token"},
        "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION}},
    }
    for k, v in over.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return JobSpec.model_validate(data, context={"base_dir": str(tmp_path)})


class RuntimePeer:
    """moto's ``sagemaker-runtime`` InvokeEndpoint, answered by moto's server, with what moto leaves out.

    moto answers every InvokeEndpoint with the next canned result queued through its
    ``/moto-api/static/sagemaker/endpoint-results`` API (docstring of
    ``moto.sagemakerruntime.models.SageMakerRuntimeBackend.invoke_endpoint``; the same request to the
    same endpoint gets the same result again), or with the static ``body`` / ``content_type`` /
    ``invoked_production_variant`` strings when the queue is empty, and never checks the endpoint.
    :meth:`install` wraps moto's handler (in this process: ThreadedMotoServer serves from the
    test's own interpreter) so that, as SageMaker does, an endpoint missing from moto's SageMaker
    backend answers ``ValidationError`` "Endpoint NAME of account ACCOUNT not found." and a
    ``TargetVariant`` the endpoint lacks answers ``ValidationError`` (that text is this fake's own);
    :meth:`fail_next` makes the
    next invocation answer a modelled error. Errors are moto ``ServiceException`` objects, which
    moto's server serialises from botocore's sagemaker-runtime model (HTTP status, error code,
    modelled members such as ``OriginalStatusCode``), so botocore parses them as it parses AWS.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list = []
        self.invocations: list[dict] = []

    def queue(self, *results: dict) -> None:
        """Queue canned answers: dicts with ``Body``, ``ContentType``, ``InvokedProductionVariant``,
        ``CustomAttributes`` (moto's endpoint-results API)."""
        import json
        import urllib.request

        req = urllib.request.Request(self.url + "/moto-api/static/sagemaker/endpoint-results", method="POST",
                                     data=json.dumps({"region": REGION, "results": list(results)}).encode())
        urllib.request.urlopen(req).read()

    def fail_next(self, code: str, message: str, **members) -> None:
        """Answer the next invocation with error ``code`` (a shape of the sagemaker-runtime model,
        e.g. ``ModelError`` with ``OriginalStatusCode=500``)."""
        err = _runtime_error(code, message)
        for k, v in members.items():
            setattr(err, k, v)
        self.failures.append(err)

    def install(self, monkeypatch) -> None:
        from moto.sagemaker.models import sagemaker_backends
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        original = SageMakerRuntimeResponse.invoke_endpoint
        peer = self

        def invoke_endpoint(resp):
            name = resp._get_params().get("EndpointName") or resp.path.split("/")[2]
            target = resp.headers.get("X-Amzn-SageMaker-Target-Variant")
            peer.invocations.append({"endpoint": name, "target_variant": target,
                                     "content_type": resp.headers.get("Content-Type"),
                                     "accept": resp.headers.get("Accept"), "body": resp.body})
            ep = sagemaker_backends[resp.current_account][resp.region].endpoints.get(name)
            if ep is None:
                raise _runtime_error("ValidationError", f"Endpoint {name} of account {resp.current_account} not found.")
            variants = [v["VariantName"] for v in ep.production_variants]
            if target is not None and target not in variants:
                raise _runtime_error("ValidationError", f"The variant {target} is not a production variant of "
                                                          f"endpoint {name}")
            if peer.failures:
                raise peer.failures.pop(0)
            return original(resp)

        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


def _runtime_error(code: str, message: str):
    """A moto ``ServiceException`` serialised with the sagemaker-runtime model. (moto looks a
    ``moto.<service>`` exception's model up by its module; one defined outside moto is serialised
    with the model of the service that answers, here sagemaker-runtime.)"""
    from moto.core.exceptions import ServiceException

    class SageMakerRuntimeError(ServiceException):
        pass

    return SageMakerRuntimeError(code, message)
