"""``invoke`` against the workspace fake: the SDK's ``serving_endpoints.query`` (traffic split), the
per-served-model path (a pinned variant), the payload shapes, the reported variant and errors."""

from __future__ import annotations

import pytest

from unijob.contract import EndpointHandle
from unijob.errors import NotFound, TargetError, UsageError

INVOCATIONS = r"/serving-endpoints/ranker/invocations"


@pytest.fixture
def endpoint(dbx_adapter, fake, spec_factory):
    """``ranker`` with served entities current (v3, 80%) and canary (v4, 20%); v3 sums each row,
    v4 sums it times ten."""
    spec = spec_factory("""
    name: ranker
    script: src/train.py
    endpoint:
      model: main.ml.ranker
      model_version: "3"
      variants:
        - {name: current, weight: 80}
        - {name: canary, model: "models:/main.ml.ranker/4", weight: 20}
    """)

    def values(row):
        return row.values() if isinstance(row, dict) else row

    fake.models["main.ml.ranker/3"] = lambda rows: [sum(values(r)) for r in rows]
    fake.models["main.ml.ranker/4"] = lambda rows: [10 * sum(values(r)) for r in rows]
    return dbx_adapter.deploy(dbx_adapter.plan_endpoint(spec))


def test_instances_go_through_the_sdk_and_report_the_serving_entity(dbx_adapter, fake, endpoint):
    dbx_adapter.set_traffic(endpoint, {"current": 0, "canary": 100})
    r = dbx_adapter.invoke(endpoint, {"instances": [[1, 2], [3, 4]]})
    assert (r.body, r.variant) == ({"predictions": [30, 70]}, "canary")
    assert r.latency_seconds > 0
    call = fake.calls("POST", INVOCATIONS)[-1]
    assert call.json() == {"instances": [[1, 2], [3, 4]]}
    assert call.headers["authorization"] == "Bearer x"
    dbx_adapter.set_traffic(endpoint, {"current": 100, "canary": 0})
    r = dbx_adapter.invoke(endpoint, {"instances": [[1, 2], [3, 4]]})
    assert (r.body, r.variant) == ({"predictions": [3, 7]}, "current")
    assert fake.errors == []


def test_the_split_decides_without_a_variant(dbx_adapter, fake, endpoint):
    dbx_adapter.set_traffic(endpoint, {"current": 50, "canary": 50})
    seen = [dbx_adapter.invoke(endpoint, {"instances": [[1]]}) for _ in range(30)]
    assert {s.variant for s in seen} == {"current", "canary"}  # P(one side never drawn) = 2 * 0.5**30
    assert all(s.body == {"predictions": [1 if s.variant == "current" else 10]} for s in seen)


def test_a_pinned_variant_uses_the_served_models_path(dbx_adapter, fake, endpoint):
    dbx_adapter.set_traffic(endpoint, {"current": 100, "canary": 0})
    r = dbx_adapter.invoke(endpoint, {"instances": [[5]]}, variant="canary")
    assert (r.body, r.variant) == ({"predictions": [50]}, "canary")
    call = fake.calls("POST", r"/serving-endpoints/ranker/served-models/canary/invocations")
    assert len(call) == 1 and call[0].json() == {"instances": [[5]]}
    assert fake.calls("POST", INVOCATIONS) == []
    with pytest.raises(UsageError, match=r"no served entity 'canry'.*did you mean 'canary'"):
        dbx_adapter.invoke(endpoint, {"instances": [[5]]}, variant="canry")
    assert fake.errors == []


@pytest.mark.parametrize("payload, sent", [
    ({"dataframe_records": [{"a": 1, "b": 2}]}, {"dataframe_records": [{"a": 1, "b": 2}]}),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}),
    ({"inputs": {"a": [1], "b": [2]}}, {"inputs": {"a": [1], "b": [2]}}),
    ({"instances": [[1, 2]], "client_request_id": "req-1"}, {"instances": [[1, 2]], "client_request_id": "req-1"}),
])
def test_other_input_shapes_pass_through_the_sdks_keywords(dbx_adapter, fake, endpoint, payload, sent):
    r = dbx_adapter.invoke(endpoint, payload, variant="current")
    assert r.body == {"predictions": [3]}
    assert fake.calls("POST", r".*/invocations")[-1].json() == sent
    r = dbx_adapter.invoke(endpoint, payload)
    assert r.body in ({"predictions": [3]}, {"predictions": [30]}) and r.variant in ("current", "canary")
    assert fake.calls("POST", INVOCATIONS)[-1].json() == sent
    assert fake.errors == []


@pytest.mark.parametrize("payload, message", [
    ([[1, 2]], r"JSON object such as \{\"instances\": \.\.\.\}.*got a JSON list"),
    ({"instance": [[1]]}, r"key\(s\) instance .*did you mean 'instances'.*accepted keys: client_request_id, dataframe_records"),
    ({"instances": [[1]], "parameters": {"k": 1}}, r"key\(s\) parameters .*no request-level parameters"),
    ({"instances": "1,2"}, r'"instances" must be a JSON array'),
    ({"dataframe_split": {"cols": ["a"], "data": [[1]]}}, r'"dataframe_split" must be a JSON object with "columns"'),
    ({"instances": [[1]], "stream": True}, "streamed"),
    ({"instances": [[float("nan")]]}, "not JSON"),
])
def test_bad_payloads_are_usage_errors_and_send_nothing(dbx_adapter, fake, endpoint, payload, message):
    with pytest.raises(UsageError, match=message):
        dbx_adapter.invoke(endpoint, payload)
    assert fake.calls("POST", r".*/invocations") == []


def test_errors_from_the_endpoint(dbx_adapter, fake, endpoint):
    with pytest.raises(TargetError, match=r"endpoint ranker answered HTTP 400 BAD_REQUEST: .*Error 'unsupported operand"):
        dbx_adapter.invoke(endpoint, {"instances": [["a", 1]]})
    with pytest.raises(TargetError, match=r"HTTP 400 BAD_REQUEST: The request must contain exactly one of"):
        dbx_adapter.invoke(endpoint, {"instances": [[1]], "dataframe_records": [{"a": 1}]})
    with pytest.raises(NotFound, match="no Databricks serving endpoint nope"):
        dbx_adapter.invoke(EndpointHandle(target="databricks", name="nope"), {"instances": [[1]]})
    gone = EndpointHandle(target="databricks", name="ranker")  # no served entities known: the workspace decides
    with pytest.raises(NotFound, match="endpoint ranker served entity shadow"):
        dbx_adapter.invoke(gone, {"instances": [[1]]}, variant="shadow")
    fake.fail_next(500, path=INVOCATIONS)
    with pytest.raises(TargetError, match=r"HTTP 500"):
        dbx_adapter.invoke(endpoint, {"instances": [[1]]})
    assert fake.errors == []


def test_invoke_imports_nothing_until_called():
    import subprocess
    import sys

    code = ("import sys, unijob_adapters.databricks.adapter, unijob_adapters.databricks.endpoints; "
            "print(any(m.startswith('databricks') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_fake_rejects_an_invocation_body_the_sdk_would_not_send(dbx_env):
    """The fake checks invocation bodies against ``ServingEndpointsAPI.query``'s keywords and the
    SDK's dataclasses: a key query() has no argument for fails the request."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    w = WorkspaceClient(host=dbx_env.url, token="x")
    with pytest.raises(DatabricksError):
        w.api_client.do("POST", "/serving-endpoints/any/invocations", body={"instances": [[1]], "params": {"k": 1}})
    with pytest.raises(DatabricksError):
        w.api_client.do("POST", "/serving-endpoints/any/invocations", body={"dataframe_split": {"data": [[1]], "x": 1}})
    assert len(dbx_env.errors) == 2 and "params" in str(dbx_env.errors[0]) and "round-trip" in str(dbx_env.errors[1])
    dbx_env.errors.clear()


def test_the_timeout_bounds_each_request_and_the_retries(dbx_adapter, endpoint):
    w = dbx_adapter._client(endpoint.extra, timeout=2.5)
    assert w.config.http_timeout_seconds == 2.5 and w.config.retry_timeout_seconds == 3
    assert dbx_adapter._client(endpoint.extra, timeout=2.5) is w
    assert dbx_adapter._client(endpoint.extra) is not w
