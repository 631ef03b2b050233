"""invoke: PredictionService.Predict over REST to the fake (which parses PredictRequest and routes
by the endpoint's trafficSplit), the envelope, deployedModelId -> variant, and errors."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from unijob.contract import EndpointHandle, InvokeResult
from unijob.errors import NotFound, TargetError, UsageError
from unijob.testing.httpfake import Response

SERVE = "us-docker.pkg.dev/p/r/serve:1"
PREDICT = r"/v1/projects/demo-project/locations/us-central1/endpoints/train:predict"


@pytest.fixture(autouse=True)
def _fake_saw_only_valid_requests(fake):
    yield
    assert fake.errors == [], f"the fake rejected requests: {fake.errors}"


@pytest.fixture
def deployed(adapter, make_spec):
    spec = make_spec(endpoint={"model": "gs://bucket/model", "image": SERVE, "min_replicas": 1, "max_replicas": 2,
                               "autoscaling": {"metric": "cpu_utilization", "target": 60},
                               "variants": [{"name": "blue", "weight": 90},
                                            {"name": "green", "weight": 10, "model": "gs://bucket/m2"}]})
    return adapter.deploy(adapter.plan_endpoint(spec))


def test_round_trip_names_the_variant_that_answered(adapter, deployed, fake):
    adapter.set_traffic(deployed, {"blue": 0, "green": 100})
    r = adapter.invoke(deployed, {"instances": [[1, 2], {"text": "hi"}], "parameters": {"top_k": 3}})
    assert isinstance(r, InvokeResult) and r.variant == "green" and r.latency_seconds > 0
    assert r.body == {"predictions": [
        {"variant": "green", "instance": [1.0, 2.0], "parameters": {"top_k": 3.0}},
        {"variant": "green", "instance": {"text": "hi"}, "parameters": {"top_k": 3.0}}]}
    (sent,) = fake.calls("POST", PREDICT)
    body = sent.json()
    assert body["instances"] == [[1, 2], {"text": "hi"}] and body["parameters"] == {"top_k": 3}
    assert set(body) <= {"instances", "parameters", "labels"} and not body.get("labels")


def test_requests_follow_the_traffic_split(adapter, deployed):
    seen = Counter(adapter.invoke(deployed, {"instances": [i]}).variant for i in range(60))
    assert set(seen) == {"blue", "green"} and seen["blue"] > seen["green"]
    adapter.set_traffic(deployed, {"blue": 100, "green": 0})
    assert {adapter.invoke(deployed, {"instances": [i]}).variant for i in range(10)} == {"blue"}


def test_instances_without_parameters(adapter, deployed, fake):
    r = adapter.invoke(deployed, {"instances": ["a", None, True]})
    assert [p["instance"] for p in r.body["predictions"]] == ["a", None, True]
    assert "parameters" not in fake.calls("POST", PREDICT)[0].json()


def test_a_pinned_variant_is_a_usage_error(adapter, deployed, fake):
    with pytest.raises(UsageError, match=r"no per-request deployed model.*unijob traffic train green=100"):
        adapter.invoke(deployed, {"instances": [1]}, variant="green")
    assert fake.calls("POST", PREDICT) == []
    assert "invoke --variant" in adapter.unsupported


@pytest.mark.parametrize("payload, words", [
    ([1, 2], r'envelope \{"instances": \[\.\.\.\]\}.*JSON array'),
    ({"instance": [1]}, r"unknown key 'instance'.*did you mean 'instances'"),
    ({"parameters": {}}, r'no "instances"'),
    ({"instances": {"a": 1}}, r'"instances" must be a JSON list, got a JSON object'),
    ({"instances": [float("nan")]}, "not a JSON value"),
])
def test_payload_must_be_the_envelope(adapter, deployed, fake, payload, words):
    with pytest.raises(UsageError, match=words):
        adapter.invoke(deployed, payload)
    assert fake.calls("POST", PREDICT) == []


def test_unknown_endpoint_is_not_found(adapter, deployed, fake):
    gone = EndpointHandle(target="vertex", name="nowhere",
                          native_id="projects/demo-project/locations/us-central1/endpoints/nowhere",
                          extra=dict(deployed.extra))
    with pytest.raises(NotFound, match="nowhere"):
        adapter.invoke(gone, {"instances": [1]})
    adapter.undeploy(deployed)
    with pytest.raises(NotFound):
        adapter.invoke(deployed, {"instances": [1]})


def test_an_error_answer_keeps_status_and_message(adapter, deployed, fake):
    message = "The prediction did not succeed: handler raised KeyError 'x'"
    fake.predictor = lambda d, instances, params: Response(400, {"error": {
        "code": 400, "status": "FAILED_PRECONDITION", "message": message}})
    with pytest.raises(TargetError, match=r"HTTP 400: The prediction did not succeed: handler raised KeyError 'x'"):
        adapter.invoke(deployed, {"instances": [1]})
    assert len(fake.calls("POST", PREDICT)) == 1  # a 400 is not retried


def test_transient_errors_are_retried(adapter, deployed, fake):
    fake.fail_next(503, 1, path=PREDICT)
    fake.fail_next(429, 1, path=PREDICT, headers={"Retry-After": "0"})
    assert adapter.invoke(deployed, {"instances": [5]}).body["predictions"][0]["instance"] == 5.0
    assert len(fake.calls("POST", PREDICT)) == 3


def test_a_deployed_model_the_handle_does_not_know_has_no_variant_name(adapter, deployed, fake):
    fake.predictor = lambda d, instances, params: [0 for _ in instances]
    stale = EndpointHandle(target="vertex", name=deployed.name, native_id=deployed.native_id,
                           extra={**deployed.extra, "variants": {"old": "99"}})
    r = adapter.invoke(stale, {"instances": [1]})
    assert r.variant is None and r.body == {"predictions": [0.0]}


def test_handler_endpoint_answers_through_predict(adapter, make_spec, block, fake):
    """A handler variant deployed with the serving image and invoked like any other."""
    spec = make_spec(endpoint={"model": "gs://bucket/model", "handler": "ranker.serve:Model",
                               "autoscaling": {"metric": "cpu_utilization", "target": 60}},
                     targets={"vertex": block(serving_image="us-docker.pkg.dev/p/r/unijob-serve:0.1")})
    h = adapter.deploy(adapter.plan_endpoint(spec))
    r = adapter.invoke(h, {"instances": [[0.5]]})
    assert r.variant == "primary" and r.body["predictions"][0]["instance"] == [0.5]


def test_invoke_module_imports_no_sdk():
    code = ("import sys; import unijob_adapters.vertex.adapter, unijob_adapters.vertex.invoke; "
            "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.aiplatform', 'google.api_core'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
