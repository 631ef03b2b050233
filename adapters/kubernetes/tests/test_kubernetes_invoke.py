"""Endpoint probes."""

from __future__ import annotations

import json

import pytest

from unijob.errors import SpecError
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
