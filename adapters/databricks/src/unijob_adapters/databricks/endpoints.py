"""Model Serving: the ``POST /api/2.0/serving-endpoints`` body for ``spec.endpoint``, and the calls
that deploy, re-split and delete it.

Each variant becomes one served entity: a Unity Catalog model (``entity_name`` ``catalog.schema.model``,
``entity_version`` a number), named after the variant; ``traffic_config.routes`` carries the split.
Model references accepted: ``models:/catalog.schema.model/3``, ``uc://catalog.schema.model/3``, or
``catalog.schema.model`` with ``endpoint.model_version``. Databricks serves registered models, not
arbitrary images or artifact URIs.

Mappings (source: Databricks, "Create custom model serving endpoints", compute type and workload
size tables, https://docs.databricks.com/aws/en/machine-learning/model-serving/create-manage-serving-endpoints
and the Azure equivalent; read 2026-11-21):

- ``workload_type`` from the accelerator per replica: none -> ``CPU``; ``T4:1`` -> ``GPU_SMALL``;
  on AWS ``A10G:1`` -> ``GPU_MEDIUM``, ``A10G:4`` -> ``MULTIGPU_MEDIUM``, ``A100-80GB:1`` ->
  ``GPU_LARGE``; on Azure ``A100-80GB:1`` -> ``GPU_LARGE``. Others: set
  ``targets.databricks.serving.workload_type``.
- ``workload_size`` from ``max_replicas``: Databricks sizes by provisioned concurrency, Small = up
  to 4 concurrent requests, Medium = 8-16, Large = 16-64. unijob counts one replica as 4 concurrent
  requests, so ``max_replicas`` 1 -> Small, 2-4 -> Medium, 5-16 -> Large; more is rejected.
- ``scale_to_zero_enabled`` = ``min_replicas == 0``. Databricks autoscales on concurrency itself;
  ``endpoint.autoscaling`` is not sent.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping, Optional

from unijob.contract import EndpointHandle, EndpointStatus, NativeRequest, Plan, PlanResources
from unijob.errors import NotReady, SpecError

from .options import DatabricksOptions

CREATE_API = "POST /api/2.0/serving-endpoints"
CONCURRENCY_PER_REPLICA = 4
WORKLOAD_TYPES = {
    "aws": {None: "CPU", "T4:1": "GPU_SMALL", "A10G:1": "GPU_MEDIUM", "A10G:4": "MULTIGPU_MEDIUM", "A100-80GB:1": "GPU_LARGE"},
    "azure": {None: "CPU", "T4:1": "GPU_SMALL", "A100-80GB:1": "GPU_LARGE"},
    "gcp": {None: "CPU"},
}
_UC_NAME = re.compile(r"^[^./\s@]+\.[^./\s@]+\.[^./\s@]+$")


def serving_sdk():
    try:
        from databricks.sdk.service import serving
    except ImportError:
        raise NotReady("databricks-sdk is not installed", hint="pip install 'unijob[databricks]'") from None
    return serving


def parse_model(ref: str, default_version: Optional[str], loc: tuple) -> tuple[str, str]:
    """``(entity_name, entity_version)`` of a Unity Catalog model reference.

    Raises:
        SpecError: not a three-part UC name, or no numeric version.
    """
    version: Optional[str] = None
    body = ref
    for prefix in ("models:/", "uc://"):
        if ref.startswith(prefix):
            body = ref[len(prefix):]
            break
    if "@" in body:
        raise SpecError.at(loc, f"'{ref}' names an alias; Databricks serving needs a version number "
                                "(models:/catalog.schema.model/3)")
    if "/" in body:
        body, _, version = body.partition("/")
    if not _UC_NAME.match(body):
        raise SpecError.at(loc, f"'{ref}' is not a Unity Catalog model; expected catalog.schema.model "
                                "(models:/catalog.schema.model/VERSION)")
    version = version or default_version
    if not version:
        raise SpecError.at(loc, f"Unity Catalog model '{body}' has no version; give models:/{body}/VERSION "
                                "or endpoint.model_version")
    if not str(version).isdigit():
        raise SpecError.at(loc, f"model version '{version}' is not a version number")
    return body, str(version)


def workload_size(max_replicas: int) -> str:
    """Small / Medium / Large for ``max_replicas`` (see the module docstring).

    Raises:
        SpecError: more than 16 replicas (64 concurrent requests, the Large size).
    """
    c = max_replicas * CONCURRENCY_PER_REPLICA
    if c <= 4:
        return "Small"
    if c <= 16:
        return "Medium"
    if c <= 64:
        return "Large"
    raise SpecError.at(("endpoint", "max_replicas"), f"{max_replicas} replicas ({c} concurrent requests) is more "
                                                     "than the Large workload size serves (64); at most 16")


def build_endpoint_plan(spec, opts: DatabricksOptions) -> Plan:
    """The plan that creates ``spec.endpoint`` as a serving endpoint. Pure.

    Raises:
        SpecError: no endpoint, a model that is not a versioned UC model, an image/handler, an
            accelerator with no Databricks compute type.
    """
    serving = serving_sdk()
    ep = spec.endpoint
    if ep is None:
        raise SpecError.at(("endpoint",), "the spec has no endpoint section")
    name = ep.name or spec.name
    entities = []
    routes = []
    for i, v in enumerate(ep.resolved_variants()):
        own = bool(ep.variants) and bool(ep.variants[i].model)
        loc = ("endpoint", "variants", i, "model") if own else ("endpoint", "model")
        if v.image or v.handler:
            raise SpecError.at(loc[:-1] + ("image" if v.image else "handler",),
                               "Databricks Model Serving serves registered MLflow models; give a Unity Catalog model")
        entity, version = parse_model(v.model, ep.model_version, loc)
        wtype = opts.serving.workload_type
        if wtype is None:
            table = WORKLOAD_TYPES[opts.cloud]
            if v.accelerator not in table:
                offered = ", ".join(k for k in table if k)
                raise SpecError.at(("endpoint", "accelerator"),
                                   f"Databricks serving on {opts.cloud} has no compute type for {v.accelerator}; "
                                   f"offered: {offered or 'CPU only'} (or set targets.databricks.serving.workload_type)")
            wtype = table[v.accelerator]
        try:
            wt = serving.ServingModelWorkloadType(wtype)
        except ValueError:
            raise SpecError.at(("targets", "databricks", "serving", "workload_type"),
                               f"unknown workload type '{wtype}'; expected one of "
                               + ", ".join(t.value for t in serving.ServingModelWorkloadType)) from None
        entities.append(serving.ServedEntityInput(
            name=v.name, entity_name=entity, entity_version=version, workload_type=wt,
            workload_size=opts.serving.workload_size or workload_size(int(ep.max_replicas or 1)),
            scale_to_zero_enabled=ep.min_replicas == 0, environment_vars=dict(ep.env) or None))
        routes.append(serving.Route(served_entity_name=v.name, traffic_percentage=v.weight))
    config = serving.EndpointCoreConfigInput(name=name, served_entities=entities, traffic_config=serving.TrafficConfig(routes=routes))
    body: dict[str, Any] = {"name": name, "config": config.as_dict()}
    if spec.labels:
        body["tags"] = [serving.EndpointTag(key=k, value=val).as_dict() for k, val in sorted(spec.labels.items())]
    if opts.serving.route_optimized is not None:
        body["route_optimized"] = opts.serving.route_optimized
    check_create_body(body)
    return Plan(
        target="databricks", kind="endpoint", name=name, submission_id=name,
        requests=[NativeRequest(api=CREATE_API, body=body, when="deploy",
                                note=f"{len(entities)} served entit{'y' if len(entities) == 1 else 'ies'}")],
        resources=PlanResources(service="databricks-serving", instance_count=int(ep.max_replicas or 1),
                                accelerator=ep.accelerator.split(":")[0] if ep.accelerator else None,
                                accelerators_per_node=int(ep.accelerator.split(":")[1]) if ep.accelerator else 0),
        notes=[f"workload size from max_replicas={ep.max_replicas} at {CONCURRENCY_PER_REPLICA} concurrent "
               "requests per replica; Databricks autoscales on concurrency within it"]
              + (["scale to zero when idle (min_replicas 0)"] if ep.min_replicas == 0 else []),
        extra={"host": opts.host, "profile": opts.profile},
    )


def check_create_body(body: Mapping[str, Any]) -> None:
    """Validate a create body with the SDK's types (keys of ``ServingEndpointsAPI.create``; the
    config round-trips ``EndpointCoreConfigInput``). Raises ValueError."""
    serving = serving_sdk()
    unknown = set(body) - (set(inspect.signature(serving.ServingEndpointsAPI.create).parameters) - {"self"})
    if unknown:
        raise ValueError(f"serving-endpoints create takes no {sorted(unknown)}")
    cfg = body.get("config", {})
    if serving.EndpointCoreConfigInput.from_dict(cfg).as_dict() != cfg:
        raise ValueError(f"config does not round-trip through EndpointCoreConfigInput: {cfg!r}")
    for t in body.get("tags", []):
        if serving.EndpointTag.from_dict(t).as_dict() != t:
            raise ValueError(f"bad tag {t!r}")


# ---- calls (w is a databricks.sdk.WorkspaceClient) ---------------------------------------------

def deploy(w, plan: Plan) -> EndpointHandle:
    from databricks.sdk.errors import ResourceAlreadyExists

    serving = serving_sdk()
    body = plan.request(CREATE_API).body
    try:
        w.serving_endpoints.create(
            name=body["name"], config=serving.EndpointCoreConfigInput.from_dict(body["config"]),
            tags=[serving.EndpointTag.from_dict(t) for t in body["tags"]] if "tags" in body else None,
            route_optimized=body.get("route_optimized"))
    except ResourceAlreadyExists:
        pass  # a retried deploy: the endpoint from the first attempt stands
    return EndpointHandle(target="databricks", name=body["name"], native_id=body["name"],
                          extra={"served_entities": body["config"]["served_entities"],
                                 "host": plan.extra.get("host"), "profile": plan.extra.get("profile")})


def status(w, handle: EndpointHandle) -> EndpointStatus:
    """The endpoint's state and traffic split. Raises unijob NotFound when it does not exist."""
    from databricks.sdk.errors import NotFound as SdkNotFound

    from unijob.errors import NotFound

    try:
        d = w.serving_endpoints.get(handle.name)
    except SdkNotFound:
        raise NotFound(f"no Databricks serving endpoint '{handle.name}'") from None
    st = d.state
    update = st.config_update.value if st and st.config_update else ""
    ready = st.ready.value if st and st.ready else ""
    if update == "IN_PROGRESS":
        state = "UPDATING" if ready == "READY" else "CREATING"
    elif ready == "READY":
        state = "IN_SERVICE"
    elif update in ("UPDATE_FAILED", "UPDATE_CANCELED"):
        state = "FAILED"
    else:
        state = "CREATING"
    traffic: dict[str, int] = {}
    if d.config and d.config.traffic_config and d.config.traffic_config.routes:
        for r in d.config.traffic_config.routes:
            traffic[r.served_entity_name or r.served_model_name or ""] = int(r.traffic_percentage or 0)
    return EndpointStatus(state=state, traffic=traffic, url=d.endpoint_url,
                          message=f"ready={ready or '?'} config_update={update or '?'}")


def set_traffic(w, handle: EndpointHandle, split: Mapping[str, int]) -> None:
    from unijob.contract import validate_split

    serving = serving_sdk()
    entities = handle.extra.get("served_entities") or []
    full = validate_split(split, [e["name"] for e in entities])
    w.serving_endpoints.update_config(
        name=handle.name, served_entities=[serving.ServedEntityInput.from_dict(e) for e in entities],
        traffic_config=serving.TrafficConfig(routes=[serving.Route(served_entity_name=k, traffic_percentage=v)
                                                     for k, v in full.items()]))


def undeploy(w, handle: EndpointHandle) -> None:
    from databricks.sdk.errors import NotFound as SdkNotFound

    try:
        w.serving_endpoints.delete(handle.name)
    except SdkNotFound:
        pass  # already gone
