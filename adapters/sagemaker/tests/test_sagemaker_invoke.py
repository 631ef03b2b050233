"""invoke: InvokeEndpoint through botocore to moto's sagemaker-runtime (canned answers queued with
moto's endpoint-results API), JSON in and out, TargetVariant, and the errors SageMaker answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sagemaker_testkit import REGION, ROLE, validate_against_model
from unijob.contract import EndpointHandle, InvokeResult
from unijob.errors import NotFound, TargetError, UsageError
from unijob.spec import JobSpec
from unijob_adapters.sagemaker.adapter import SageMakerAdapter

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/unijob-serve:0.1"
SPEC = {"name": "ranker", "image": "x:1",
        "endpoint": {"image": IMAGE, "instance_type": {"sagemaker": "ml.m5.xlarge"}, "min_replicas": 1,
                     "max_replicas": 1,
                     "variants": [{"name": "blue", "model": "s3://bucket/m/v1.tar.gz", "weight": 80},
                                  {"name": "green", "model": "s3://bucket/m/v2.tar.gz", "weight": 20}]},
        "targets": {"sagemaker": {"role_arn": ROLE, "region": REGION, "poll_interval": 0.05}}}


@pytest.fixture
def deployed(runtime):
    adapter = SageMakerAdapter()
    h = adapter.deploy(adapter.plan_endpoint(JobSpec.model_validate(SPEC)))
    yield adapter, h
    adapter.undeploy(h)


def _answer(value, variant="blue"):
    """A canned InvokeEndpoint answer carrying ``value`` as JSON."""
    return {"Body": json.dumps(value), "ContentType": "application/json", "InvokedProductionVariant": variant}


def _invocations(sent):
    return [p for api, p in sent if api == "sagemaker-runtime:InvokeEndpoint"]


def test_round_trip_parses_json_and_reports_the_variant(deployed, runtime, sent):
    adapter, h = deployed
    runtime.queue(_answer({"predictions": [[0.1, 0.9]]}, variant="green"))
    r = adapter.invoke(h, {"instances": [[1.0, 2.0]]})
    assert isinstance(r, InvokeResult)
    assert r.body == {"predictions": [[0.1, 0.9]]} and r.variant == "green" and r.latency_seconds > 0
    (params,) = _invocations(sent)
    validate_against_model("sagemaker-runtime", "InvokeEndpoint", params)
    assert params == {"EndpointName": "ranker", "Body": b'{"instances":[[1.0,2.0]]}',
                      "ContentType": "application/json", "Accept": "application/json"}
    (seen,) = runtime.invocations
    assert seen["content_type"] == seen["accept"] == "application/json"
    assert json.loads(seen["body"]) == {"instances": [[1.0, 2.0]]} and seen["target_variant"] is None


def test_any_json_value_passes_through(deployed, runtime, sent):
    adapter, h = deployed
    runtime.queue(_answer([3, 4]), _answer("ok"))
    assert adapter.invoke(h, [1, 2]).body == [3, 4]
    assert adapter.invoke(h, {"inputs": "text"}).body == "ok"
    assert [p["Body"] for p in _invocations(sent)] == [b"[1,2]", b'{"inputs":"text"}']


def test_pinned_variant_is_target_variant(deployed, runtime, sent):
    adapter, h = deployed
    runtime.queue(_answer({"predictions": [1]}, variant="blue"))
    r = adapter.invoke(h, {"instances": [1]}, variant="blue")
    assert r.variant == "blue"
    assert _invocations(sent)[0]["TargetVariant"] == "blue"
    assert runtime.invocations[0]["target_variant"] == "blue"


def test_unknown_variant_is_refused_before_sending(deployed, runtime, sent):
    adapter, h = deployed
    with pytest.raises(UsageError, match="purple.*blue, green"):
        adapter.invoke(h, {"instances": [1]}, variant="purple")
    assert _invocations(sent) == [] and runtime.invocations == []


def test_variant_the_endpoint_lacks_is_a_target_error(deployed, runtime):
    """A handle without variant names (e.g. an older record) lets SageMaker judge the variant."""
    adapter, h = deployed
    bare = EndpointHandle(target="sagemaker", name=h.name, native_id=h.native_id, extra={"region": REGION})
    with pytest.raises(TargetError, match="ValidationError.*400"):
        adapter.invoke(bare, {"instances": [1]}, variant="purple")


def test_unknown_endpoint_is_not_found(runtime):
    h = EndpointHandle(target="sagemaker", name="nowhere", native_id="nowhere", extra={"region": REGION})
    with pytest.raises(NotFound, match="nowhere"):
        SageMakerAdapter().invoke(h, {"instances": [1]})
    assert runtime.invocations[0]["endpoint"] == "nowhere"


def test_model_error_carries_the_containers_status_and_message(deployed, runtime):
    adapter, h = deployed
    runtime.fail_next("ModelError", "Received server error (500) from primary with message \"boom\"",
                      OriginalStatusCode=500, OriginalMessage="handler raised ValueError: boom",
                      LogStreamArn=f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/sagemaker/Endpoints/ranker")
    with pytest.raises(TargetError) as ei:
        adapter.invoke(h, {"instances": [1]})
    err = ei.value
    assert "HTTP 500" in err.message and "handler raised ValueError: boom" in err.message
    assert err.hint and "/aws/sagemaker/Endpoints/ranker" in err.hint
    assert len(runtime.invocations) == 1  # a ModelError is not retried


def test_service_errors_keep_code_and_status(deployed, runtime):
    adapter, h = deployed
    runtime.fail_next("ValidationError", "1 validation error detected: Value at 'body' failed")
    with pytest.raises(TargetError, match=r"ValidationError \(HTTP 400\): 1 validation error"):
        adapter.invoke(h, {"instances": [1]})


def test_throttling_is_retried(deployed, runtime):
    adapter, h = deployed
    runtime.fail_next("ServiceUnavailable", "try later")
    runtime.queue(_answer({"predictions": [7]}))
    assert adapter.invoke(h, {"instances": [7]}).body == {"predictions": [7]}
    assert len(runtime.invocations) == 2


def test_an_answer_that_is_not_json_is_a_target_error(deployed, runtime):
    adapter, h = deployed  # nothing queued: moto answers its static "body" / "content_type"
    with pytest.raises(TargetError, match="content_type.*not JSON.*'body'"):
        adapter.invoke(h, {"instances": [1]})


@pytest.mark.parametrize("payload, words", [({"x": {1, 2}}, "not a JSON value"),
                                            ({"x": float("nan")}, "not a JSON value"),
                                            ({"instances": ["a" * (6 * 1024 * 1024)]}, "at most 6291456")])
def test_bad_payloads_are_usage_errors(deployed, runtime, payload, words):
    adapter, h = deployed
    with pytest.raises(UsageError, match=words):
        adapter.invoke(h, payload)
    assert runtime.invocations == []


def test_invoke_imports_no_sdk_until_called(tmp_path):
    """plan_endpoint and the adapter import no boto3; invoke's module neither, until it runs."""
    code = ("import sys, json; from unijob.spec import JobSpec; "
            "from unijob_adapters.sagemaker.adapter import SageMakerAdapter; "
            "import unijob_adapters.sagemaker.invoke; "
            f"SageMakerAdapter().plan_endpoint(JobSpec.model_validate(json.loads({json.dumps(json.dumps(SPEC))}))); "
            "print(sorted(m for m in sys.modules if m.startswith(('boto3', 'botocore'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
