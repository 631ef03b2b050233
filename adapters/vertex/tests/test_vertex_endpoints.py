"""Endpoints: models:upload, endpoint create, deployModel (LROs), traffic split, undeploy."""

from __future__ import annotations

import json
import re

import pytest

from unijob.errors import SpecError, UsageError

SERVE = "us-docker.pkg.dev/p/r/serve:1"


@pytest.fixture(autouse=True)
def _fake_saw_only_valid_requests(fake):
    yield
    assert fake.errors == [], f"the fake rejected requests: {fake.errors}"


def _spec(make_spec, **endpoint):
    ep = {"model": "gs://bucket/model", "image": SERVE, "accelerator": "L4", "min_replicas": 1, "max_replicas": 3,
          "autoscaling": {"metric": "gpu_utilization", "target": 70},
          "variants": [{"name": "blue", "weight": 90}, {"name": "green", "weight": 10, "model": "gs://bucket/m2"}]}
    ep.update(endpoint)
    return make_spec(endpoint=ep)


def test_plan_holds_upload_create_deploy(adapter, make_spec):
    plan = adapter.plan_endpoint(_spec(make_spec))
    apis = [r.api.split("/")[-1] for r in plan.requests]
    assert apis == ["models:upload", "models:upload", "endpoints?endpointId=train", "train:deployModel", "train:deployModel"]
    first, last = plan.requests[3].body, plan.requests[4].body
    dr = first["deployedModel"]["dedicatedResources"]
    assert dr["machineSpec"] == {"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    assert dr["minReplicaCount"] == 1 and dr["maxReplicaCount"] == 3
    assert dr["autoscalingMetricSpecs"] == [
        {"metricName": "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle", "target": 70}]
    assert first["trafficSplit"] == {"0": 100}
    ids = plan.extra["variants"]
    assert all(len(i) == 10 and i.isdigit() for i in ids.values()) and len(set(ids.values())) == 2
    assert first["deployedModel"]["id"] == ids["blue"] and last["deployedModel"]["id"] == ids["green"]
    assert last["trafficSplit"] == {ids["blue"]: 90, "0": 10}
    assert plan.extra["traffic"] == {ids["blue"]: 90, ids["green"]: 10}
    up = plan.requests[1].body
    assert re.fullmatch(r"train-green-[0-9a-f]{10}", up["modelId"]) and up["model"]["artifactUri"] == "gs://bucket/m2"
    assert up["model"]["displayName"] == up["modelId"] and last["deployedModel"]["model"].endswith("/" + up["modelId"])
    assert up["model"]["containerSpec"]["imageUri"] == SERVE and "parent" not in up


def test_deploy_traffic_undeploy(adapter, make_spec, fake):
    plan = adapter.plan_endpoint(_spec(make_spec))
    h = adapter.deploy(plan)
    ep = fake.endpoints[h.native_id]
    assert {d["displayName"] for d in ep["deployedModels"]} == {"blue", "green"}
    ids = h.extra["variants"]
    assert ep["trafficSplit"] == {ids["blue"]: 90, ids["green"]: 10}
    assert len(fake.models) == 2
    # every LRO was polled until done
    assert all(op["polls"] >= 1 for op in fake.operations.values()) and len(fake.operations) == 5
    assert fake.calls("GET", r"/(v1|ui)/projects/[^/]+/locations/[^/]+/operations/\d+")
    st = adapter.endpoint_status(h)
    assert st.state == "IN_SERVICE" and st.traffic == {"blue": 90, "green": 10} and st.replicas == {"blue": 1, "green": 1}

    adapter.set_traffic(h, {"blue": 0, "green": 100})
    (patch,) = fake.calls("PATCH", r".*/endpoints/train")
    assert patch.arg("updateMask") in ("trafficSplit", "traffic_split")
    assert adapter.endpoint_status(h).traffic == {"blue": 0, "green": 100}

    with pytest.raises(UsageError):
        adapter.set_traffic(h, {"blue": 50, "green": 20})

    adapter.undeploy(h)
    assert fake.endpoints == {} and fake.models == {}
    adapter.undeploy(h)  # a second undeploy finds nothing to do


def test_deploy_is_idempotent(adapter, make_spec, fake):
    plan = adapter.plan_endpoint(_spec(make_spec))
    adapter.deploy(plan)
    adapter.deploy(plan)
    assert len(fake.calls("POST", r".*/models:upload")) == 2
    assert len(fake.calls("POST", r".*/endpoints")) == 1
    assert len(fake.calls("POST", r".*:deployModel")) == 2


def test_redeploy_with_a_new_artifact_serves_it(adapter, make_spec, fake):
    """model: v1 -> v3 and deploy again: a new Model with the v3 artifact is uploaded and deployed
    for that variant, the spec's split holds, and v1's deployed model and Model are removed (the
    model id used to be <endpoint>-<variant> whatever the artifact, and the v1 Model was kept)."""
    variants = lambda blue: [{"name": "blue", "weight": 90, "model": blue},  # noqa: E731
                             {"name": "green", "weight": 10, "model": "gs://bucket/m2"}]
    first = adapter.plan_endpoint(_spec(make_spec, variants=variants("gs://bucket/models/v1")))
    h1 = adapter.deploy(first)
    again = adapter.plan_endpoint(_spec(make_spec, variants=variants("gs://bucket/models/v3")))
    assert again.extra["variants"]["green"] == first.extra["variants"]["green"]
    assert again.extra["variants"]["blue"] != first.extra["variants"]["blue"]
    h3 = adapter.deploy(again)
    ep = fake.endpoints[h3.native_id]
    served = {d["displayName"]: fake.models[d["model"]]["artifactUri"] for d in ep["deployedModels"]}
    assert served == {"blue": "gs://bucket/models/v3", "green": "gs://bucket/m2"}
    assert sorted(m["artifactUri"] for m in fake.models.values()) == ["gs://bucket/m2", "gs://bucket/models/v3"]
    assert adapter.endpoint_status(h3).traffic == {"blue": 90, "green": 10}
    assert len(fake.calls("POST", r".*/endpoints")) == 1  # the endpoint itself is kept
    answers = {adapter.invoke(h3, {"instances": [i]}).variant for i in range(30)}
    assert answers == {"blue", "green"}
    adapter.deploy(again)  # a retried redeploy changes nothing
    uploads = [json.loads(r.body)["model"]["artifactUri"] for r in fake.calls("POST", r".*/models:upload")]
    assert uploads == ["gs://bucket/models/v1", "gs://bucket/m2", "gs://bucket/models/v3"]  # green's Model kept
    assert len(fake.calls("POST", r".*:deployModel")) == 3 and len(fake.calls("POST", r".*:undeployModel")) == 1
    adapter.undeploy(h3)
    assert fake.endpoints == {} and fake.models == {}
    assert h1.extra["models"] != h3.extra["models"]


def test_deploy_survives_transient_errors(adapter, make_spec, fake):
    plan = adapter.plan_endpoint(_spec(make_spec))
    fake.fail_next(503, 1, path=r".*:deployModel")
    fake.fail_next(429, 1, path=r".*/models:upload", headers={"Retry-After": "0"})
    h = adapter.deploy(plan)
    assert len(fake.endpoints[h.native_id]["deployedModels"]) == 2 and len(fake.models) == 2


def test_single_variant_cpu_endpoint(adapter, make_spec, fake):
    spec = make_spec(endpoint={"model": "gs://bucket/model", "image": SERVE, "min_replicas": 2, "max_replicas": 5,
                               "autoscaling": {"metric": "cpu_utilization", "target": 60}})
    h = adapter.deploy(adapter.plan_endpoint(spec))
    (dm,) = fake.endpoints[h.native_id]["deployedModels"]
    assert dm["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert dm["dedicatedResources"]["autoscalingMetricSpecs"][0]["metricName"].endswith("/cpu/utilization")
    assert adapter.endpoint_status(h).traffic == {"primary": 100}


def test_deploy_onto_an_existing_endpoint(adapter, make_spec, fake):
    """targets.vertex.existing_endpoint: no endpoint is created; the spec's variants join the
    endpoint and take the traffic; deleting them leaves the endpoint and what else it serves."""
    other = adapter.deploy(adapter.plan_endpoint(make_spec(
        name="shared", endpoint={"model": "gs://bucket/other", "image": SERVE, "min_replicas": 1,
                                 "autoscaling": {"metric": "cpu_utilization", "target": 60}})))
    shared = other.native_id
    (others,) = fake.endpoints[shared]["deployedModels"]
    for ref in ("shared", shared):
        spec = _spec(make_spec)
        spec = spec.model_copy(update={"targets": {"vertex": {**spec.targets["vertex"], "existing_endpoint": ref}}})
        plan = adapter.plan_endpoint(spec)
        assert [r.api.split("/")[-1] for r in plan.requests] == [
            "models:upload", "models:upload", "shared:deployModel", "shared:deployModel"], "no endpoint is created"
        assert plan.extra["endpoint"] == shared and any("existing endpoint" in n for n in plan.notes)
    h = adapter.deploy(plan)
    assert h.native_id == shared and len(fake.calls("POST", r".*/endpoints")) == 1  # only the first endpoint's
    ep = fake.endpoints[shared]
    assert {d["displayName"] for d in ep["deployedModels"]} == {"primary", "blue", "green"}
    ids = h.extra["variants"]
    assert ep["trafficSplit"] == {ids["blue"]: 90, ids["green"]: 10}
    assert adapter.endpoint_status(h).traffic == {"blue": 90, "green": 10}
    adapter.undeploy(h)
    ep = fake.endpoints[shared]
    assert [d["id"] for d in ep["deployedModels"]] == [others["id"]] and ep["trafficSplit"] == {others["id"]: 100}
    assert sorted(fake.models) == [others["model"]], "the spec's models are deleted, the other stays"
    adapter.undeploy(h)  # again: nothing left of ours
    assert shared in fake.endpoints


def test_an_existing_endpoint_elsewhere_is_a_spec_error(adapter, make_spec):
    spec = _spec(make_spec)
    ref = "projects/other-project/locations/europe-west4/endpoints/123"
    spec = spec.model_copy(update={"targets": {"vertex": {**spec.targets["vertex"], "existing_endpoint": ref}}})
    issue = _err(adapter, spec)
    assert issue.loc == ("targets", "vertex", "existing_endpoint") and "projects/demo-project/locations/us-central1" in issue.message


def _err(adapter, spec):
    with pytest.raises(SpecError) as ei:
        adapter.plan_endpoint(spec)
    return ei.value.issues[0]


def test_scale_to_zero_is_rejected_with_the_reason(adapter, make_spec, fake):
    issue = _err(adapter, _spec(make_spec, min_replicas=0))
    assert issue.loc == ("endpoint", "min_replicas") and "minReplicaCount >= 1" in issue.message
    assert fake.requests == []


@pytest.mark.parametrize("metric", ["concurrency", "invocations_per_replica_per_minute"])
def test_metrics_vertex_lacks(adapter, make_spec, metric):
    issue = _err(adapter, _spec(make_spec, autoscaling={"metric": metric, "target": 5}))
    assert issue.loc == ("endpoint", "autoscaling", "metric") and "duty cycle" in issue.message


def test_gpu_metric_without_gpu(adapter, make_spec):
    issue = _err(adapter, _spec(make_spec, accelerator=None))
    assert issue.loc == ("endpoint", "autoscaling", "metric") and issue.suggestion == "cpu_utilization"


def test_model_must_be_on_gcs(adapter, make_spec):
    issue = _err(adapter, _spec(make_spec, model="s3://bucket/model.tar.gz"))
    assert issue.loc == ("endpoint", "variants", 0, "model")


def test_variant_accelerator_vertex_lacks(adapter, make_spec):
    issue = _err(adapter, _spec(make_spec, accelerator="A10G"))
    assert issue.loc == ("endpoint", "variants", 0, "accelerator") and "offered" in issue.message


UNIJOB_SERVE = "us-docker.pkg.dev/p/r/unijob-serve:0.1"


def test_handler_variant_runs_the_serving_image_on_vertex_routes(adapter, make_spec, block, fake):
    """A handler variant: serving image, UNIJOB_HANDLER, port 8080 declared, predict/health routes
    left to Vertex (which passes them as AIP_PREDICT_ROUTE/AIP_HEALTH_ROUTE); an image variant as before."""
    from google.cloud import aiplatform_v1

    spec = make_spec(endpoint={"model": "gs://bucket/model", "image": SERVE, "env": {"LOG_LEVEL": "info"},
                               "autoscaling": {"metric": "cpu_utilization", "target": 60},
                               "variants": [{"name": "blue", "weight": 90},
                                            {"name": "green", "weight": 10, "handler": "ranker.serve:Model"}]},
                     targets={"vertex": block(serving_image=UNIJOB_SERVE)})
    plan = adapter.plan_endpoint(spec)
    blue, green = [r.body["model"]["containerSpec"] for r in plan.requests if r.api.endswith("models:upload")]
    assert blue == {"imageUri": SERVE, "env": [{"name": "LOG_LEVEL", "value": "info"}]}
    assert green == {"imageUri": UNIJOB_SERVE, "ports": [{"containerPort": 8080}],
                     "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "UNIJOB_HANDLER", "value": "ranker.serve:Model"}]}
    spec_msg = aiplatform_v1.ModelContainerSpec.from_json(json.dumps(green), ignore_unknown_fields=False)
    assert [p.container_port for p in spec_msg.ports] == [8080]
    assert spec_msg.predict_route == "" and spec_msg.health_route == ""
    h = adapter.deploy(plan)
    stored = fake.models[h.extra["models"][1]]["containerSpec"]
    assert stored["ports"] == [{"containerPort": 8080}] and "predictRoute" not in stored and "healthRoute" not in stored
    adapter.undeploy(h)


def test_handler_without_serving_image_names_the_option(adapter, make_spec, fake):
    issue = _err(adapter, make_spec(endpoint={"model": "gs://bucket/model", "handler": "ranker.serve:Model",
                                              "autoscaling": {"metric": "cpu_utilization", "target": 60}}))
    assert issue.loc == ("endpoint", "handler") and "targets.vertex.serving_image" in issue.message
    assert "unijob serve-image" in issue.message
    assert fake.requests == []
