"""Vertex online prediction endpoints: plan (pure) and the calls that deploy, re-split and remove.

A deployment is, per variant, one uploaded ``Model`` (container spec + ``artifact_uri``), one
``Endpoint``, and per variant one ``deployModel`` with ``dedicated_resources`` (machine spec,
min/max replicas, autoscaling metric, spot). IDs are deterministic and follow the content: the
model id is ``<endpoint>-<variant>-<10 hex of sha256 of the Model body>`` (artifact URI, container,
labels), the deployed model id 10 digits of sha256 of ``<variant>/<model id>``, the endpoint id
``<endpoint>``. So a retried deploy finds what is already there instead of duplicating it, and a
redeploy with a new artifact (``model:`` v1 -> v3) uploads and deploys a new Model instead of
finding the old one under the same id, as the SageMaker adapter's model names do. After the deploys,
the spec's traffic split is set with UpdateEndpoint, and the deployed models of this endpoint's
earlier Models (``<endpoint>-...`` ids no longer in the plan) are undeployed and their Models deleted.
Model ids are at most 63 characters of ``[a-z0-9_-]``, starting with a letter; deployed model ids
1-10 digits (``aiplatform_v1.UploadModelRequest.model_id``, ``DeployedModel.id`` field docs).

Handler variants (``endpoint.handler`` with ``targets.vertex.serving_image``): the model's container
is the serving image with ``UNIJOB_HANDLER=<handler>`` and ``ports: [{containerPort: 8080}]``
(unijob.serve's port; also Vertex's default when ``ports`` is empty). ``predictRoute`` and
``healthRoute`` stay unset, so Vertex uses its defaults (``/v1/endpoints/ENDPOINT/deployedModels/
DEPLOYED_MODEL:predict`` for both) and tells the container through ``AIP_PREDICT_ROUTE``,
``AIP_HEALTH_ROUTE`` and ``AIP_HTTP_PORT``, which ``unijob.serve`` reads (``aiplatform_v1.
ModelContainerSpec`` field docs, google-cloud-aiplatform 2.7).

Traffic: the first deployModel takes 100 %, later ones join at 0 %, and the last one carries the
spec's split (``"0"`` stands for the model being deployed, as the DeployModelRequest documents).

Scale to zero: rejected. Vertex v1 ``DedicatedResources.minReplicaCount`` "must be greater than
or equal to 1" (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/DedicatedResources,
checked 2026-11-21); scale-to-zero exists only as a preview ``scaleToZeroSpec`` in v1beta1.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from unijob.contract import EndpointHandle, EndpointStatus, NativeRequest, Plan, PlanResources, validate_split
from unijob.errors import SpecError

from unijob_adapters.vertex import machines
from unijob_adapters.vertex.options import VertexOptions
from unijob_adapters.vertex.plan import TARGET, resolve_where
from unijob_adapters.vertex.tables import AUTOSCALING_METRICS, SCALE_TO_ZERO_REASON, UNSUPPORTED_METRIC_REASON
from unijob_adapters.vertex.validate import rest_json


def _ident(text: str, limit: int = 63) -> str:
    out = text.lower()[:limit].rstrip("-_")
    return out if out[:1].isalpha() else ("e-" + out)[:limit].rstrip("-_")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def model_id_for(endpoint_id: str, variant: str, model: Mapping[str, Any]) -> str:
    """``<endpoint>-<variant>-<10 hex>``: the hex of sha256 of the Model body, so a new artifact (or
    container) is a new Model; at most 63 characters."""
    tag = _digest(json.dumps(model, sort_keys=True))[:10]
    return _ident(f"{_ident(f'{endpoint_id}-{variant}', 63 - 11)}-{tag}")


def deployed_id_for(variant: str, model_id: str) -> str:
    """10 digits (the first not 0) derived from sha256 of ``<variant>/<model id>``."""
    return str(1_000_000_000 + int(_digest(f"{variant}/{model_id}")[:15], 16) % 9_000_000_000)


def build_endpoint_plan(spec: Any, opts: VertexOptions) -> Plan:
    """Requests that deploy ``spec.endpoint`` (models:upload per variant, endpoints create,
    deployModel per variant).

    Raises:
        SpecError: no endpoint; ``min_replicas`` 0 (with the reason); an autoscaling metric Vertex
            lacks; gpu_utilization without an accelerator; a model that is not gs://; no image.
    """
    from unijob.serve.config import DEFAULT_PORT

    ep = spec.endpoint
    if ep is None:
        raise SpecError.at(("endpoint",), "no endpoint section in the spec")
    project, location = resolve_where(opts)
    parent = f"projects/{project}/locations/{location}"
    if ep.min_replicas < 1:
        raise SpecError.at(("endpoint", "min_replicas"), f"min_replicas 0 is not available: {SCALE_TO_ZERO_REASON}; "
                                                         "expected 1 or more")
    metric = ep.autoscaling.metric
    if metric not in AUTOSCALING_METRICS:
        raise SpecError.at(("endpoint", "autoscaling", "metric"), f"{metric}: {UNSUPPORTED_METRIC_REASON}",
                           "gpu_utilization")
    target = int(round(ep.autoscaling.target))
    if not 1 <= target <= 100:
        raise SpecError.at(("endpoint", "autoscaling", "target"),
                           f"{ep.autoscaling.target} is not a percentage; expected 1-100 for {metric}")

    name = ep.name or spec.name
    endpoint_id = _ident(name)
    endpoint_name = existing_endpoint_name(opts, parent) or f"{parent}/endpoints/{endpoint_id}"
    labels = {"unijob-endpoint": endpoint_id}
    requests: list[NativeRequest] = []
    deploys: list[NativeRequest] = []
    variants = ep.resolved_variants()
    declared = bool(ep.variants)
    first_machine = None
    deployed_ids: dict[str, str] = {}
    models: list[str] = []
    for i, v in enumerate(variants):
        loc = ("endpoint", "variants", i) if declared else ("endpoint",)
        if not (v.model or "").startswith("gs://"):
            raise SpecError.at(loc + ("model",), f"Vertex loads model artifacts from Cloud Storage; expected a "
                                                 f"gs:// directory, got {v.model!r}")
        env = dict(ep.env)
        ports: list[dict[str, int]] = []
        if v.image:
            image = v.image
        elif v.handler and opts.serving_image:
            image, env["UNIJOB_HANDLER"] = opts.serving_image, v.handler
            ports = [{"container_port": DEFAULT_PORT}]
        else:
            raise SpecError.at(loc + (("handler",) if v.handler else ("image",)),
                               "a Vertex model needs a serving container: give image, or handler together with "
                               "targets.vertex.serving_image (the unijob serving image: build it with "
                               "`unijob serve-image` and push it to Artifact Registry)")
        machine = machines.choose(v.accelerator, v.instance_type, loc=loc)
        first_machine = first_machine or machine
        if metric == "gpu_utilization" and not machine.accelerator:
            raise SpecError.at(("endpoint", "autoscaling", "metric"),
                               f"gpu_utilization needs an accelerator, and variant '{v.name}' has none; "
                               "use cpu_utilization", "cpu_utilization")
        container: dict[str, Any] = {"image_uri": image, "env": [{"name": k, "value": val} for k, val in sorted(env.items())]}
        if ports:
            container["ports"] = ports
        model = {"artifact_uri": v.model, "container_spec": container, "labels": labels}
        if opts.encryption_key:
            model["encryption_spec"] = {"kms_key_name": opts.encryption_key}
        model_id = model_id_for(endpoint_id, v.name, model)
        model = {"display_name": model_id, **model}
        model_name = f"{parent}/models/{model_id}"
        models.append(model_name)
        up = rest_json("UploadModelRequest", {"parent": parent, "model_id": model_id, "model": model,
                                              "service_account": opts.service_account or ""})
        requests.append(NativeRequest(api=f"POST /v1/{parent}/models:upload", body=_drop(up, "parent"),
                                      when="deploy", note=f"model {model_id} for variant {v.name}"))
        deployed_id = deployed_id_for(v.name, model_id)
        deployed_ids[v.name] = deployed_id
        dedicated = {"machine_spec": machine.spec(), "min_replica_count": ep.min_replicas,
                     "max_replica_count": ep.max_replicas,
                     "autoscaling_metric_specs": [{"metric_name": AUTOSCALING_METRICS[metric], "target": target}],
                     "spot": bool(opts.endpoint_spot)}
        deployed = {"id": deployed_id, "model": model_name, "display_name": v.name,
                    "dedicated_resources": dedicated}
        if opts.service_account:
            deployed["service_account"] = opts.service_account
        if i == 0:
            split = {"0": 100} if len(variants) > 1 else {"0": v.weight}
        else:
            split = {deployed_ids[w.name]: 100 if j == 0 else 0 for j, w in enumerate(variants[:i])}
            split["0"] = 0
        if i == len(variants) - 1 and i > 0:
            split = {deployed_ids[w.name]: w.weight for w in variants[:i]}
            split["0"] = v.weight
        dm = rest_json("DeployModelRequest", {"endpoint": endpoint_name, "deployed_model": deployed,
                                              "traffic_split": split})
        deploys.append(NativeRequest(api=f"POST /v1/{endpoint_name}:deployModel", body=_drop(dm, "endpoint"),
                                     when="deploy", note=f"variant {v.name}: {ep.min_replicas}-{ep.max_replicas} x "
                                                         f"{machine.machine_type}"))
    endpoint = {"display_name": name, "labels": labels}
    if opts.encryption_key:
        endpoint["encryption_spec"] = {"kms_key_name": opts.encryption_key}
    notes = []
    if opts.existing_endpoint:
        notes.append(f"deploys onto the existing endpoint {endpoint_name} (not created here; its other deployed "
                     "models get no traffic; `unijob endpoints delete` removes only this spec's models)")
    else:
        requests.append(NativeRequest(api=f"POST /v1/{parent}/endpoints?endpointId={endpoint_id}",
                                      body=rest_json("Endpoint", endpoint), when="deploy"))
    requests.extend(deploys)
    assert first_machine is not None
    return Plan(
        target=TARGET, kind="endpoint", name=endpoint_id, submission_id=endpoint_id, requests=requests,
        resources=PlanResources(service="vertex-prediction", region=location, instance_type=first_machine.machine_type,
                                instance_count=ep.min_replicas * len(variants), accelerator=first_machine.accelerator,
                                accelerators_per_node=first_machine.accelerator_count, hours=730.0,
                                spot="spot" if opts.endpoint_spot else "on_demand"),
        notes=[f"traffic split {json.dumps({v.name: v.weight for v in variants})}; autoscaling on "
               f"{AUTOSCALING_METRICS[metric]} at {target}%", *notes],
        extra={"project": project, "location": location, "parent": parent, "endpoint": endpoint_name,
               "endpoint_id": endpoint_id, "variants": deployed_ids, "models": models,
               "existing": bool(opts.existing_endpoint),
               "traffic": {deployed_ids[v.name]: v.weight for v in variants}, "api_endpoint": opts.api_endpoint},
    )


def existing_endpoint_name(opts: VertexOptions, parent: str) -> str | None:
    """``targets.vertex.existing_endpoint`` as a resource name under ``parent`` (None when unset).

    Raises:
        SpecError: it names an endpoint in another project or location (deployModel cannot reach it).
    """
    ref = opts.existing_endpoint
    if not ref:
        return None
    full = ref if ref.startswith("projects/") else f"{parent}/endpoints/{ref}"
    if not full.startswith(parent + "/endpoints/"):
        raise SpecError.at(("targets", "vertex", "existing_endpoint"),
                           f"{ref} is not in {parent}; expected an endpoint of the target's project and location "
                           "(or its ID alone)")
    return full


def _drop(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The REST body without the fields bound in the URL path (``body: "*"`` transcoding)."""
    return {k: v for k, v in body.items() if k not in keys}


# ---- calls ------------------------------------------------------------------------------------


def deploy(conn: Any, plan: Plan) -> EndpointHandle:
    """Send the endpoint plan, skipping what already exists (models, endpoint, deployed models)."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform_v1 as aip

    ex = plan.extra
    polling = conn.polling()
    for req in plan.requests:
        if req.api.endswith("models:upload"):
            up = aip.UploadModelRequest.from_json(json.dumps(req.body), ignore_unknown_fields=False)
            up.parent = ex["parent"]
            try:
                conn.call(lambda: conn.models.get_model(name=f"{ex['parent']}/models/{up.model_id}"))
                continue
            except gexc.NotFound:
                pass
            conn.call(lambda: conn.models.upload_model(request=up, retry=conn.retry).result(polling=polling))
        elif "/endpoints?endpointId=" in req.api:
            try:
                conn.call(lambda: conn.endpoints.get_endpoint(name=ex["endpoint"]))
                continue
            except gexc.NotFound:
                pass
            endpoint = aip.Endpoint.from_json(json.dumps(req.body), ignore_unknown_fields=False)
            conn.call(lambda: conn.endpoints.create_endpoint(
                parent=ex["parent"], endpoint=endpoint, endpoint_id=ex["endpoint_id"],
                retry=conn.retry).result(polling=polling))
        elif req.api.endswith(":deployModel"):
            dm = aip.DeployModelRequest.from_json(json.dumps(req.body), ignore_unknown_fields=False)
            dm.endpoint = ex["endpoint"]
            current = conn.call(lambda: conn.endpoints.get_endpoint(name=ex["endpoint"]))
            if any(d.id == dm.deployed_model.id for d in current.deployed_models):
                continue
            conn.call(lambda: conn.endpoints.deploy_model(request=dm, retry=conn.retry).result(polling=polling))
    _settle(conn, plan)
    return EndpointHandle(target=TARGET, name=plan.name, native_id=ex["endpoint"],
                          extra={**{k: ex[k] for k in ("project", "location", "variants", "models", "api_endpoint")},
                                 **({"existing": True} if ex.get("existing") else {})})


def _settle(conn: Any, plan: Plan) -> None:
    """After a (re)deploy: the spec's traffic split (a variant whose deployModel was skipped kept
    its old share), then this endpoint's deployed models whose Model is no longer in the plan (the
    previous artifact of a variant) undeployed, and those Models deleted."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform_v1 as aip
    from google.protobuf import field_mask_pb2

    ex, polling = plan.extra, conn.polling()
    current = conn.call(lambda: conn.endpoints.get_endpoint(name=ex["endpoint"]))
    if dict(current.traffic_split) != ex["traffic"]:
        endpoint = aip.Endpoint(name=ex["endpoint"], traffic_split=ex["traffic"])
        conn.call(lambda: conn.endpoints.update_endpoint(
            endpoint=endpoint, update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]), retry=conn.retry))
    ours = f"{ex['parent']}/models/{ex['endpoint_id']}-"
    stale = [d for d in current.deployed_models if d.id not in ex["traffic"] and d.model.startswith(ours)]
    for d in stale:
        conn.call(lambda: conn.endpoints.undeploy_model(endpoint=ex["endpoint"], deployed_model_id=d.id,
                                                        traffic_split=ex["traffic"],
                                                        retry=conn.retry).result(polling=polling))
    for model in sorted({d.model for d in stale} - set(ex["models"])):
        try:
            conn.call(lambda: conn.models.delete_model(name=model, retry=conn.retry).result(polling=polling))
        except gexc.NotFound:
            pass


def status(conn: Any, handle: EndpointHandle) -> EndpointStatus:
    """The endpoint's deployed variants, traffic (percent) and minimum replicas."""
    ep = conn.call(lambda: conn.endpoints.get_endpoint(name=handle.native_id))
    by_id = {d.id: d for d in ep.deployed_models}
    variants: Mapping[str, str] = handle.extra["variants"]
    traffic = {v: int(ep.traffic_split.get(i, 0)) for v, i in variants.items()}
    replicas = {v: int(by_id[i].dedicated_resources.min_replica_count) for v, i in variants.items() if i in by_id}
    state = "IN_SERVICE" if len(replicas) == len(variants) else "UPDATING"
    return EndpointStatus(state=state, traffic=traffic, replicas=replicas,
                          url=f"{conn.api_endpoint}/v1/{handle.native_id}:predict")


def set_traffic(conn: Any, handle: EndpointHandle, split: Mapping[str, int]) -> None:
    """UpdateEndpoint with ``update_mask=traffic_split``."""
    from google.cloud import aiplatform_v1 as aip
    from google.protobuf import field_mask_pb2

    variants: Mapping[str, str] = handle.extra["variants"]
    full = validate_split(split, list(variants))
    endpoint = aip.Endpoint(name=handle.native_id, traffic_split={variants[v]: pct for v, pct in full.items()})
    conn.call(lambda: conn.endpoints.update_endpoint(
        endpoint=endpoint, update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]), retry=conn.retry))


def undeploy(conn: Any, handle: EndpointHandle) -> None:
    """Undeploy every deployed model, delete the endpoint, delete the uploaded models. On an
    ``existing_endpoint`` only this spec's deployed models go (the rest keep the traffic they had,
    scaled to 100 %) and the endpoint stays. What is already gone is skipped, so a second undeploy
    is not an error."""
    from google.api_core import exceptions as gexc

    polling = conn.polling()
    existing = bool(handle.extra.get("existing"))
    try:
        ep = conn.call(lambda: conn.endpoints.get_endpoint(name=handle.native_id))
    except gexc.NotFound:
        ep = None
    if ep is not None:
        ours, our_ids = set(handle.extra.get("models", [])), set(handle.extra.get("variants", {}).values())
        deployed = [d.id for d in ep.deployed_models]
        remaining = [d.id for d in ep.deployed_models if not existing or (d.model not in ours and d.id not in our_ids)]
        current = dict(ep.traffic_split)
        for gone in [i for i in reversed(deployed) if i not in remaining]:
            deployed.remove(gone)
            split = _rescaled({i: current.get(i, 0) for i in deployed})
            conn.call(lambda: conn.endpoints.undeploy_model(
                endpoint=handle.native_id, deployed_model_id=gone, traffic_split=split,
                retry=conn.retry).result(polling=polling))
        while not existing and remaining:
            gone = remaining.pop()
            split = {r: (100 if k == 0 else 0) for k, r in enumerate(remaining)}
            conn.call(lambda: conn.endpoints.undeploy_model(
                endpoint=handle.native_id, deployed_model_id=gone, traffic_split=split,
                retry=conn.retry).result(polling=polling))
    if ep is not None and not existing:
        try:
            conn.call(lambda: conn.endpoints.delete_endpoint(name=handle.native_id, retry=conn.retry)
                      .result(polling=polling))
        except gexc.NotFound:
            pass
    for model in handle.extra.get("models", []):
        try:
            conn.call(lambda: conn.models.delete_model(name=model, retry=conn.retry).result(polling=polling))
        except gexc.NotFound:
            pass


def _rescaled(split: Mapping[str, int]) -> dict[str, int]:
    """``split`` scaled to sum to 100 (integers; the remainder to the largest share; all to the
    first when every share is 0); ``{}`` when empty."""
    if not split:
        return {}
    total = sum(split.values())
    if total == 0:
        return {k: (100 if j == 0 else 0) for j, k in enumerate(split)}
    out = {k: v * 100 // total for k, v in split.items()}
    out[max(split, key=lambda k: split[k])] += 100 - sum(out.values())
    return out
