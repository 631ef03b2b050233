"""Model Serving: the ``POST /api/2.0/serving-endpoints`` body for ``spec.endpoint``, and the calls
that deploy, re-split and delete it.

Each variant becomes one served entity: a Unity Catalog model (``entity_name`` ``catalog.schema.model``,
``entity_version`` a number), named after the variant; ``traffic_config.routes`` carries the split.
Model references accepted: ``models:/catalog.schema.model/3``, ``uc://catalog.schema.model/3``, or
``catalog.schema.model`` with ``endpoint.model_version``; ``models:/catalog.schema.model@alias`` is
resolved on Unity Catalog before the plan (:mod:`.registry`, whose ``model_location`` is
``models:/catalog.schema.model/VERSION``). Databricks serves registered models, not
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

Invocation (:func:`invoke`): ``w.serving_endpoints.query(name, ...)`` sends
``POST /serving-endpoints/NAME/invocations``; the endpoint's traffic split picks the served entity,
and the SDK returns the ``served-model-name`` response header as
``QueryEndpointResponse.served_model_name`` (databricks-sdk 0.156 ``ServingEndpointsAPI.query``
asks for that header). A pinned ``variant`` goes to ``POST
/serving-endpoints/NAME/served-models/VARIANT/invocations``, which bypasses the split (Databricks,
"Serve multiple models to a model serving endpoint", section "Query individual models behind an
endpoint", https://docs.databricks.com/aws/en/machine-learning/model-serving/serve-multiple-models-to-serving-endpoint,
read 2026-11); the SDK has no method for it (databricks-sdk-py issue #1043), so it is sent with the
same client's ``api_client.do`` (same auth, retries and error types) and parsed into the same
``QueryEndpointResponse``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping, Optional

from unijob.contract import (EndpointHandle, EndpointStatus, InvokeResult, NativeRequest, Plan, PlanResources,
                             encode_payload)
from unijob.errors import NotReady, SpecError, UsageError

from .options import DatabricksOptions

CREATE_API = "POST /api/2.0/serving-endpoints"
CONCURRENCY_PER_REPLICA = 4
WORKLOAD_TYPES = {
    "aws": {None: "CPU", "T4:1": "GPU_SMALL", "A10G:1": "GPU_MEDIUM", "A10G:4": "MULTIGPU_MEDIUM", "A100-80GB:1": "GPU_LARGE"},
    "azure": {None: "CPU", "T4:1": "GPU_SMALL", "A100-80GB:1": "GPU_LARGE"},
    "gcp": {None: "CPU"},
}
_UC_NAME = re.compile(r"^[^./\s@]+\.[^./\s@]+\.[^./\s@]+$")


def serving_sdk(*, real: bool = True):
    """``databricks.sdk.service.serving``; with ``real=False`` its stand-in from the SDK's cached
    schema when there is one (plans: :mod:`.validate`).

    Raises:
        NotReady: databricks-sdk is not installed.
    """
    if not real:
        from . import validate

        validate.sdk_location()
        stand_in = validate.service("serving")
        if stand_in is not None:
            return stand_in
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
                                "(models:/catalog.schema.model/3); `unijob plan/deploy -t databricks` resolve "
                                "models:/catalog.schema.model@alias on Unity Catalog first")
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
    serving = serving_sdk(real=False)
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


def check_create_body(body: Mapping[str, Any], *, real: bool = False) -> None:
    """Validate a create body with the SDK's types (their cached stand-ins unless ``real``): keys of
    ``ServingEndpointsAPI.create``; the config round-trips ``EndpointCoreConfigInput``. Raises ValueError."""
    from . import validate

    serving = serving_sdk(real=real)
    unknown = set(body) - validate.api_params("serving.ServingEndpointsAPI.create", real=real)
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
        check_create_body(body, real=True)  # the plan checked it with the cached stand-ins
    except ValueError as e:
        raise UsageError(f"the plan's serving-endpoints create body does not fit databricks-sdk: {e}") from None
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


# ---- invocation -------------------------------------------------------------------------------

#: The input shapes of a custom (MLflow) model endpoint; exactly one per request (Databricks,
#: "Query serving endpoints for custom models", scoring formats).
INPUT_KEYS = ("instances", "inputs", "dataframe_records", "dataframe_split")


def query_body(payload: Any) -> dict[str, Any]:
    """The invocations body for a caller's JSON ``payload``, as ``ServingEndpointsAPI.query``
    builds it: the top-level keys are the SDK method's keyword arguments (``instances``,
    ``inputs``, ``dataframe_records``, ``dataframe_split``, and the chat/completions/embeddings
    fields), ``dataframe_split`` through ``DataframeSplitInput`` and ``messages`` through
    ``ChatMessage``.

    Raises:
        UsageError: not a JSON object; a key the SDK does not take (with the accepted keys and the
            closest one); a list-valued key that is not a list; ``stream: true`` (a streamed
            answer is not one JSON value).
    """
    import difflib

    serving = serving_sdk()
    accepted = sorted(set(inspect.signature(serving.ServingEndpointsAPI.query).parameters) - {"self", "name"})
    shapes = ", ".join(f'{{"{k}": ...}}' for k in INPUT_KEYS)
    if not isinstance(payload, dict):
        raise UsageError(f"a Databricks serving endpoint takes a JSON object such as {shapes}; "
                         f"got a JSON {type(payload).__name__}")
    unknown = sorted(set(payload) - set(accepted))
    if unknown:
        hint = ""
        if unknown == ["parameters"]:
            hint = " (the invocations API has no request-level parameters for custom models; drop it)"
        else:
            close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"the payload has key(s) {', '.join(unknown)} that Databricks' invocations API does not "
                         f"take{hint}; accepted keys: {', '.join(accepted)}")
    for k in ("instances", "dataframe_records", "messages", "stop"):
        if k in payload and not isinstance(payload[k], list):
            raise UsageError(f'"{k}" must be a JSON array, got {type(payload[k]).__name__}')
    if payload.get("stream"):
        raise UsageError('"stream": true asks for a streamed answer; invoke returns one JSON value')
    body = dict(payload)
    if "dataframe_split" in body:
        d = body["dataframe_split"]
        if not isinstance(d, dict) or set(d) - {"columns", "data", "index"}:
            raise UsageError('"dataframe_split" must be a JSON object with "columns", "data" and optionally "index"')
        body["dataframe_split"] = serving.DataframeSplitInput.from_dict(d).as_dict()
    if "messages" in body:
        if not all(isinstance(m, dict) for m in body["messages"]):
            raise UsageError('"messages" must be an array of {"role": ..., "content": ...} objects')
        body["messages"] = [serving.ChatMessage.from_dict(m).as_dict() for m in body["messages"]]
    encode_payload(body)
    return body


def invoke(w, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None) -> InvokeResult:
    """Query the endpoint once with ``w`` (a ``WorkspaceClient`` whose http/retry timeouts bound the
    call); see the module docstring for the two paths.

    Returns:
        ``body``: the ``QueryEndpointResponse`` as a dict (``{"predictions": [...]}`` for a custom
        model; ``choices``/``data``/``outputs``... for others), without ``served-model-name``;
        ``variant``: the served entity that answered (the ``served-model-name`` header), or None
        when the workspace sent none.

    Raises:
        UsageError: see :func:`query_body`; a ``variant`` that is not one of the handle's served
            entities.
        NotFound: no such endpoint (or served entity) in the workspace (HTTP 404).
        TargetError: any other error answer (``HTTP <status> <error_code>: <message>``), or no
            answer within the client's timeouts.
    """
    import time

    import requests
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.errors import NotFound as SdkNotFound

    from unijob.errors import NotFound, TargetError

    serving = serving_sdk()
    body = query_body(payload)
    names = [e["name"] for e in handle.extra.get("served_entities") or []]
    if variant is not None and names and variant not in names:
        import difflib

        close = difflib.get_close_matches(variant, names, n=1)
        raise UsageError(f"endpoint {handle.name} has no served entity '{variant}'; it has {', '.join(names)}"
                         + (f" (did you mean '{close[0]}'?)" if close else ""))
    where = f"endpoint {handle.name}" + (f" served entity {variant}" if variant else "")
    t0 = time.perf_counter()
    try:
        if variant is None:
            kw = dict(body)
            if "dataframe_split" in kw:
                kw["dataframe_split"] = serving.DataframeSplitInput.from_dict(kw["dataframe_split"])
            if "messages" in kw:
                kw["messages"] = [serving.ChatMessage.from_dict(m) for m in kw["messages"]]
            resp = w.serving_endpoints.query(handle.name, **kw)
        else:
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            if w.config.workspace_id:
                headers["X-Databricks-Workspace-Id"] = w.config.workspace_id
            raw = w.api_client.do("POST", f"/serving-endpoints/{handle.name}/served-models/{variant}/invocations",
                                  body=body, headers=headers, response_headers=["served-model-name"])
            resp = serving.QueryEndpointResponse.from_dict(raw)
    except SdkNotFound as e:
        raise NotFound(f"no Databricks serving {where}: {e}") from None
    except DatabricksError as e:
        raise TargetError(f"Databricks {where} answered HTTP {_http_status(e)} "
                          f"{getattr(e, 'error_code', None) or type(e).__name__}: {e}") from None
    except (TimeoutError, requests.RequestException) as e:
        raise TargetError(f"Databricks {where} did not answer: {type(e).__name__}: {str(e)[:200]}") from None
    latency = time.perf_counter() - t0
    out = resp.as_dict()
    out.pop("served-model-name", None)
    for k in ("predictions", "outputs"):  # as_dict drops empty lists; an empty answer is still an answer
        if getattr(resp, k) is not None and k not in out:
            out[k] = list(getattr(resp, k))
    return InvokeResult(body=out, variant=resp.served_model_name or None, latency_seconds=latency)


def _http_status(e: Exception) -> str:
    """The HTTP status an SDK error class stands for (``InvalidParameterValue`` -> 400), or ``?``."""
    from databricks.sdk.errors.platform import STATUS_CODE_MAPPING

    by_class = {cls: code for code, cls in STATUS_CODE_MAPPING.items()}
    for cls in type(e).__mro__:
        if cls in by_class:
            return str(by_class[cls])
    return "?"
