"""Endpoint probes and ``invoke`` through the API server's service proxy.

The fake API server forwards the proxy request to a real ``python -m unijob.serve`` process per
Deployment, started from that Deployment's own container env (handler, model URI, variant), so the
manifest, the proxy call and the served handler are exercised end to end.
"""

from __future__ import annotations

import json
import random
from urllib.parse import unquote

import pytest

from unijob.contract import EndpointHandle
from unijob.errors import NotFound, SpecError, TargetError, UsageError
from unijob.spec import JobSpec

HANDLER = '''
import json
import os
import pathlib

from unijob.serve import BadRequest


class Scaler:
    def load(self, model_dir):
        self.scale = json.loads((pathlib.Path(model_dir) / "model.json").read_text())["scale"]

    def predict(self, instances):
        if not all(isinstance(row, list) and all(isinstance(x, (int, float)) for x in row) for row in instances):
            raise BadRequest("every instance must be a list of numbers")
        return [{"y": [x * self.scale for x in row], "variant": os.environ["UNIJOB_VARIANT"]} for row in instances]
'''


def _spec(tmp_path, **k8s) -> JobSpec:
    models = {}
    for name, scale in (("blue", 2), ("green", 10)):
        d = tmp_path / "models" / name
        d.mkdir(parents=True)
        (d / "model.json").write_text(json.dumps({"scale": scale}))
        models[name] = d.as_uri()
    (tmp_path / "scaler.py").write_text(HANDLER)
    return JobSpec.model_validate({
        "name": "scorer", "image": "ghcr.io/acme/train:1",
        "endpoint": {"handler": "scaler:Scaler", "min_replicas": 1, "max_replicas": 2,
                     "variants": [{"name": "blue", "weight": 90, "model": models["blue"]},
                                  {"name": "green", "weight": 10, "model": models["green"]}]},
        "targets": {"kubernetes": {"namespace": "ml", "gateway": {"name": "public"},
                                   "serving_image": "ghcr.io/acme/unijob-serve:1", **k8s}}})


def _containers(plan):
    return {r.body["metadata"]["name"]: r.body["spec"]["template"]["spec"]["containers"][0]
            for r in plan.requests if r.body["kind"] == "Deployment"}


# ---- probes ---------------------------------------------------------------------------------

def test_handler_variants_get_startup_liveness_and_readiness_probes(adapter, tmp_path, validate):
    plan = adapter.plan_endpoint(_spec(tmp_path, container_port=9000))
    for r in plan.requests:
        validate(r.body)
    for c in _containers(plan).values():
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9000, "scheme": "HTTP"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": 9000, "scheme": "HTTP"}
        assert c["startupProbe"]["httpGet"] == {"path": "/live", "port": 9000, "scheme": "HTTP"}
        # the start-up budget covers fetching the model; liveness restarts a hung server sooner
        s, live = c["startupProbe"], c["livenessProbe"]
        assert s["failureThreshold"] * s["periodSeconds"] > live["failureThreshold"] * live["periodSeconds"]
        assert {"name": "UNIJOB_HANDLER", "value": "scaler:Scaler"} in c["env"]


def test_image_variants_get_probes_only_from_probe_paths(adapter, endpoint_image_spec, validate):
    plain = adapter.plan_endpoint(endpoint_image_spec())
    for c in _containers(plain).values():
        assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(c)
    plan = adapter.plan_endpoint(endpoint_image_spec(probe_paths={"readiness": "/v1/ready", "liveness": "/healthz"}))
    for r in plan.requests:
        validate(r.body)
    for c in _containers(plan).values():
        assert c["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == c["startupProbe"]["httpGet"]["path"] == "/healthz"
    only_ready = adapter.plan_endpoint(endpoint_image_spec(probe_paths={"readiness": "/v1/ready"}))
    assert all(set(c) & {"readinessProbe", "livenessProbe", "startupProbe"} == {"readinessProbe"}
               for c in _containers(only_ready).values())


def test_a_probe_path_must_be_absolute(adapter, endpoint_image_spec):
    with pytest.raises(SpecError, match=r"targets\.kubernetes\.probe_paths\.readiness"):
        adapter.plan_endpoint(endpoint_image_spec(probe_paths={"readiness": "ready"}))


@pytest.fixture
def endpoint_image_spec():
    def make(**k8s) -> JobSpec:
        return JobSpec.model_validate({
            "name": "svc", "image": "ghcr.io/acme/train:1",
            "endpoint": {"model": "s3://b/model", "image": "ghcr.io/acme/serve:1",
                         "variants": [{"name": "blue", "weight": 50}, {"name": "green", "weight": 50}]},
            "targets": {"kubernetes": {"namespace": "ml", "gateway": {"name": "public"}, **k8s}}})
    return make


# ---- invoke ---------------------------------------------------------------------------------

@pytest.fixture
def live(adapter, fake, tmp_path, serve_pod):
    """The handler endpoint deployed on the fake, each Deployment served by a real unijob.serve
    whose model has loaded (``/ready`` answers 200)."""
    h = adapter.deploy(adapter.plan_endpoint(_spec(tmp_path)))
    for dep in h.extra["variants"].values():
        fake.attach("ml", dep, serve_pod(fake.find("Deployment", dep), wait_for="/ready"))
    return h


def test_invoke_pinned_variant_round_trips_through_the_service_proxy(adapter, fake, live):
    r = adapter.invoke(live, {"instances": [[1, 2], [3]]}, variant="green")
    assert r.variant == "green"
    assert r.body == {"predictions": [{"y": [10, 20], "variant": "green"}, {"y": [30], "variant": "green"}]}
    assert r.latency_seconds > 0
    call = fake.calls("POST", r"/api/v1/namespaces/ml/services/[^/]+/proxy/predict")[-1]
    assert unquote(call.path) == "/api/v1/namespaces/ml/services/scorer-green:80/proxy/predict"
    assert call.json() == {"instances": [[1, 2], [3]]}
    blue = adapter.invoke(live, {"instances": [[1]]}, variant="blue")
    assert (blue.variant, blue.body) == ("blue", {"predictions": [{"y": [2], "variant": "blue"}]})
    assert adapter.endpoint_status(live).state == "IN_SERVICE"
    assert fake.errors == []


def test_invoke_follows_the_routes_current_weights(adapter, fake, live):
    adapter.set_traffic(live, {"blue": 0, "green": 100})
    answers = [adapter.invoke(live, {"instances": [[1]]}) for _ in range(8)]
    assert {(a.variant, a.body["predictions"][0]["variant"]) for a in answers} == {("green", "green")}
    adapter.set_traffic(live, {"blue": 100, "green": 0})
    answers = [adapter.invoke(live, {"instances": [[1]]}) for _ in range(8)]
    assert {(a.variant, a.body["predictions"][0]["variant"]) for a in answers} == {("blue", "blue")}
    assert fake.errors == []


def test_invoke_draws_variants_by_weight(fake, live):
    import kubernetes.client

    from unijob_adapters.kubernetes.adapter import KubernetesAdapter

    a = KubernetesAdapter(kubernetes.client.Configuration(host=fake.url), rng=random.Random(7))
    a.set_traffic(live, {"blue": 50, "green": 50})
    seen = [a.invoke(live, {"instances": [[1]]}) for _ in range(30)]
    counts = {v: sum(1 for s in seen if s.variant == v) for v in ("blue", "green")}
    assert counts["blue"] > 0 and counts["green"] > 0  # P(one side never drawn) = 2 * 0.5**30
    assert all(s.body["predictions"][0]["variant"] == s.variant for s in seen)  # the reported variant answered


def test_invoke_errors(adapter, fake, live):
    with pytest.raises(UsageError, match=r"no variant 'gren'.*did you mean 'green'"):
        adapter.invoke(live, {"instances": [[1]]}, variant="gren")
    with pytest.raises(TargetError, match=r"variant blue answered HTTP 400: every instance must be a list of numbers"):
        adapter.invoke(live, {"instances": ["a"]}, variant="blue")
    with pytest.raises(TargetError, match=r"HTTP 400: .*no \"instances\""):
        adapter.invoke(live, {"instancs": [[1]]}, variant="blue")
    with pytest.raises(UsageError, match="not JSON"):
        adapter.invoke(live, {"instances": [[float("nan")]]}, variant="blue")
    route = fake.find("HTTPRoute", live.name)
    for b in route["spec"]["rules"][0]["backendRefs"]:
        b["weight"] = 0
    with pytest.raises(TargetError, match="every variant has weight 0"):
        adapter.invoke(live, {"instances": [[1]]})
    assert len(fake.errors) == 0


def test_invoke_without_a_ready_pod_is_a_target_error(adapter, fake, tmp_path):
    h = adapter.deploy(adapter.plan_endpoint(_spec(tmp_path)))  # no process attached: no endpoints
    with pytest.raises(TargetError, match=r"HTTP 503: no endpoints available for service \"scorer-blue:80\""):
        adapter.invoke(h, {"instances": [[1]]}, variant="blue")


def test_invoke_after_undeploy_is_not_found(adapter, fake, tmp_path):
    h = adapter.deploy(adapter.plan_endpoint(_spec(tmp_path)))
    adapter.undeploy(h)
    with pytest.raises(NotFound, match="HTTPRoute ml/scorer does not exist"):
        adapter.invoke(h, {"instances": [[1]]})
    with pytest.raises(NotFound, match="Service ml/scorer-blue of endpoint scorer does not exist"):
        adapter.invoke(h, {"instances": [[1]]}, variant="blue")
    gone = EndpointHandle(target="kubernetes", name="nope", extra={"namespace": "ml", "variants": {"a": "nope-a"}})
    with pytest.raises(NotFound):
        adapter.invoke(gone, {"instances": []}, variant="a")
