"""Endpoints: per variant a Deployment, a ClusterIP Service and an ``autoscaling/v2``
HorizontalPodAutoscaler; one Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1) whose
weighted ``backendRefs`` are the traffic split.

Autoscaling metrics (``endpoint.autoscaling.metric``):

- ``cpu_utilization``: a ``Resource`` metric, ``averageUtilization`` = target percent of the cpu
  request (metrics-server).
- ``concurrency``: a ``Pods`` metric ``unijob_inflight_requests`` (average per pod).
- ``invocations_per_replica_per_minute``: a ``Pods`` metric ``unijob_requests_per_minute``.
- ``gpu_utilization``: a ``Pods`` metric ``DCGM_FI_DEV_GPU_UTIL`` (NVIDIA DCGM exporter's gauge).

Probes (Kubernetes docs, "Configure Liveness, Readiness and Startup Probes",
https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/,
read 2026-11): a ``handler`` variant runs ``unijob.serve``, which answers ``GET /ready`` (200 once
``load`` finished, 503 while loading) and ``GET /live`` (200 while the event loop answers) on the
container port. Its container gets

- ``startupProbe`` ``/live`` every 10 s, 60 failures allowed: up to 10 minutes to fetch the model
  (``UNIJOB_MODEL_URI`` is downloaded before the server listens) and start; liveness and readiness
  wait until it succeeds (the docs' pattern for slow starters: ``failureThreshold x periodSeconds``
  covers the worst start-up time);
- ``livenessProbe`` ``/live`` every 10 s, timeout 5 s, restart after 3 failures (30 s hung);
- ``readinessProbe`` ``/ready`` every 5 s, timeout 2 s, out of the Service after 3 failures; a
  replica still loading its model gets no traffic.

The docs' defaults are period 10 s, timeout 1 s, failureThreshold 3; the longer timeouts leave room
for a replica busy with a large batch. An ``image`` variant gets probes only from
``targets.kubernetes.probe_paths`` (readiness, and liveness + startup on the liveness path, same
settings); without it, none: unijob cannot know what an arbitrary image answers.

Pods metrics need a custom-metrics adapter (e.g. prometheus-adapter) serving those names;
``targets.kubernetes.metric_names`` renames them. ``min_replicas: 0`` is rejected: the HPA's
``minReplicas`` must be >= 1 unless the alpha ``HPAScaleToZero`` feature gate is on
(Kubernetes docs, "Horizontal Pod Autoscaling", read 2026-11).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Mapping, Optional

from unijob.contract import (EndpointHandle, EndpointStatus, InvokeResult, NativeRequest, Plan, PlanResources,
                             encode_payload, validate_split)
from unijob.errors import NotFound, SpecError, TargetError, UsageError

from . import pods
from .options import KubernetesOptions

DEFAULT_METRICS = {
    "concurrency": "unijob_inflight_requests",
    "invocations_per_replica_per_minute": "unijob_requests_per_minute",
    "gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
}
ROUTE_API = "gateway.networking.k8s.io/v1"
SERVICE_PORT = 80
#: Probe settings; sources and reasons in the module docstring.
STARTUP_PROBE = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 60}
LIVENESS_PROBE = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
READINESS_PROBE = {"periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 1}
#: The paths ``unijob.serve`` answers (see :mod:`unijob.serve.app`).
SERVE_READY, SERVE_LIVE, SERVE_PREDICT = "/ready", "/live", "/predict"


def build(spec: Any, opts: KubernetesOptions, target: str = "kubernetes") -> Plan:
    """The endpoint's manifests. Pure.

    Raises:
        SpecError: no endpoint section; ``min_replicas`` 0; no gateway; a variant with neither image
            nor a serving image; a GPU without a node-label mapping.
    """
    ep = spec.endpoint
    if ep is None:
        raise SpecError.at(("endpoint",), "the spec has no endpoint section")
    if ep.min_replicas < 1:
        raise SpecError.at(("endpoint", "min_replicas"),
                           "a HorizontalPodAutoscaler cannot scale to zero unless the cluster enables the alpha "
                           "HPAScaleToZero feature gate; use min_replicas >= 1 on the kubernetes target")
    if not opts.gateway:
        raise SpecError.at(("targets", target, "gateway"),
                           "an endpoint needs the Gateway its HTTPRoute attaches to: gateway: {name: NAME, namespace: NS}")
    name = ep.name or spec.name
    if not name[0].isalpha():
        name = f"e{name}"
    ns = opts.namespace
    base = {**pods.labels(spec, name), "unijob.dev/endpoint": name}
    reqs: list[NativeRequest] = []
    backends = []
    variants = ep.resolved_variants()
    for i, v in enumerate(variants):
        vname = f"{name}-{v.name}"[:63].rstrip("-")
        lbls = {**base, "unijob.dev/variant": v.name}
        image = v.image or opts.serving_image
        if not image:
            loc = ("endpoint", "variants", i, "image") if ep.variants else ("endpoint", "image")
            raise SpecError.at(loc, "the kubernetes target runs a container image; give image, or set "
                                    "targets.kubernetes.serving_image for handler endpoints")
        acc_type = v.accelerator.split(":")[0] if v.accelerator else None
        count = int(v.accelerator.split(":")[1]) if v.accelerator else 0
        loc = ("endpoint", "variants", i, "accelerator") if ep.variants else ("endpoint", "accelerator")
        sel, limits, tols = pods.gpu_placement(acc_type, count, opts, loc)
        requests = {"cpu": pods.requests_for(opts.endpoint_cpu, None, None)["cpu"],
                    "memory": pods.requests_for(None, opts.endpoint_memory_gib, None)["memory"]}
        env = [{"name": "UNIJOB_MODEL_URI", "value": str(v.model)},
               {"name": "UNIJOB_ENDPOINT", "value": name}, {"name": "UNIJOB_VARIANT", "value": v.name},
               {"name": "UNIJOB_TARGET", "value": "kubernetes"}, {"name": "PORT", "value": str(opts.container_port)}]
        if v.handler:
            env.append({"name": "UNIJOB_HANDLER", "value": v.handler})
        env += [{"name": k, "value": val} for k, val in sorted(ep.env.items())]
        container = {"name": "server", "image": image, "env": env,
                     "ports": [{"name": "http", "containerPort": opts.container_port, "protocol": "TCP"}],
                     "resources": {"requests": {**requests, **limits}, "limits": {"memory": requests["memory"], **limits}},
                     "securityContext": pods.container_security()}
        container.update(probes(v, opts))
        pod_spec: dict[str, Any] = {"securityContext": pods.pod_security(opts), "containers": [container]}
        if sel:
            pod_spec["nodeSelector"] = sel
        if tols:
            pod_spec["tolerations"] = tols
        if opts.service_account:
            pod_spec["serviceAccountName"] = opts.service_account
        if opts.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
        selector = {"unijob.dev/endpoint": name, "unijob.dev/variant": v.name}
        reqs.append(NativeRequest(api="apps/v1 Deployment", when="deploy", body={
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": pods.metadata(vname, ns, lbls),
            "spec": {"replicas": ep.min_replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": lbls}, "spec": pod_spec}}}))
        reqs.append(NativeRequest(api="v1 Service", when="deploy", body={
            "apiVersion": "v1", "kind": "Service", "metadata": pods.metadata(vname, ns, lbls),
            "spec": {"selector": selector, "ports": [{"name": "http", "port": SERVICE_PORT,
                                                      "targetPort": opts.container_port, "protocol": "TCP"}]}}))
        reqs.append(NativeRequest(api="autoscaling/v2 HorizontalPodAutoscaler", when="deploy",
                                  body=_hpa(vname, ns, lbls, ep, opts)))
        backends.append({"group": "", "kind": "Service", "name": vname, "port": SERVICE_PORT, "weight": v.weight})
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": opts.gateway.name}
    if opts.gateway.namespace:
        parent["namespace"] = opts.gateway.namespace
    if opts.gateway.section_name:
        parent["sectionName"] = opts.gateway.section_name
    route = {"apiVersion": ROUTE_API, "kind": "HTTPRoute", "metadata": pods.metadata(name, ns, base),
             "spec": {"parentRefs": [parent], "rules": [{
                 "matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}]}}
    reqs.append(NativeRequest(api=f"{ROUTE_API} HTTPRoute", when="deploy", body=route,
                              note="traffic split: " + ", ".join(f"{b['name']}={b['weight']}%" for b in backends)))
    return Plan(target=target, kind="endpoint", name=name, submission_id=name, requests=reqs,
                resources=PlanResources(service="kubernetes", instance_count=ep.min_replicas * len(variants),
                                        accelerator=variants[0].accelerator.split(":")[0] if variants[0].accelerator else None),
                notes=[f"autoscaling: {ep.autoscaling.metric} target {ep.autoscaling.target:g} per replica, "
                       f"{ep.min_replicas}-{ep.max_replicas} replicas per variant"],
                extra={"namespace": ns, "context": opts.context, "kubeconfig": opts.kubeconfig,
                       "variants": {v.name: f"{name}-{v.name}"[:63].rstrip("-") for v in variants}})


def probes(variant: Any, opts: KubernetesOptions) -> dict[str, Any]:
    """The container's ``startupProbe``/``livenessProbe``/``readinessProbe`` for one resolved
    variant (see the module docstring); ``{}`` for an image variant without ``probe_paths``."""
    if variant.handler:
        ready, live = SERVE_READY, SERVE_LIVE
    elif opts.probe_paths:
        ready, live = opts.probe_paths.readiness, opts.probe_paths.liveness
    else:
        return {}
    out: dict[str, Any] = {}

    def get(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": opts.container_port, "scheme": "HTTP"}}

    if live:
        out["startupProbe"] = {**get(live), **STARTUP_PROBE}
        out["livenessProbe"] = {**get(live), **LIVENESS_PROBE}
    if ready:
        out["readinessProbe"] = {**get(ready), **READINESS_PROBE}
    return out


def _hpa(name: str, ns: Any, lbls: dict[str, str], ep: Any, opts: KubernetesOptions) -> dict[str, Any]:
    a = ep.autoscaling
    if a.metric == "cpu_utilization":
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(round(a.target))}}}
    else:
        mname = opts.metric_names.get(a.metric, DEFAULT_METRICS[a.metric])
        metric = {"type": "Pods", "pods": {"metric": {"name": mname},
                                           "target": {"type": "AverageValue", "averageValue": f"{a.target:g}"}}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": pods.metadata(name, ns, lbls),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": ep.min_replicas, "maxReplicas": ep.max_replicas, "metrics": [metric],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": int(ep.scale_in_cooldown)},
                                  "scaleUp": {"stabilizationWindowSeconds": int(ep.scale_out_cooldown)}}}}


def deploy(cluster: Any, plan: Plan, ns: str, target: str) -> EndpointHandle:
    """Create every object (409 = already there); the handle lists them for undeploy."""
    objects = []
    for r in plan.requests:
        cluster.create(r.body, ns)
        objects.append([r.body["apiVersion"], r.body["kind"], r.body["metadata"]["name"]])
    return EndpointHandle(target=target, name=plan.name, native_id=f"{ns}/{plan.name}",
                          extra={"namespace": ns, "context": plan.extra.get("context"),
                                 "kubeconfig": plan.extra.get("kubeconfig"), "objects": objects,
                                 "variants": plan.extra["variants"]})


def _route(cluster: Any, h: EndpointHandle) -> dict[str, Any]:
    return cluster.get(ROUTE_API, "HTTPRoute", h.name, h.extra["namespace"])


def status(cluster: Any, h: EndpointHandle) -> EndpointStatus:
    """IN_SERVICE when every variant has a ready replica, else CREATING; traffic from the route."""
    ns = h.extra["namespace"]
    by_svc = {svc: v for v, svc in h.extra["variants"].items()}
    try:
        route = _route(cluster, h)
    except NotFound:
        return EndpointStatus("DELETING", message="the HTTPRoute is gone")
    traffic = {by_svc.get(b["name"], b["name"]): int(b.get("weight", 1))
               for rule in route["spec"].get("rules", []) for b in rule.get("backendRefs", [])}
    replicas = {}
    for v, dep in h.extra["variants"].items():
        try:
            d = cluster.get("apps/v1", "Deployment", dep, ns)
            replicas[v] = int((d.get("status") or {}).get("readyReplicas") or 0)
        except NotFound:
            replicas[v] = 0
    state = "IN_SERVICE" if replicas and all(replicas.values()) else "CREATING"
    return EndpointStatus(state, traffic, replicas)


def _weights(cluster: Any, h: EndpointHandle) -> dict[str, int]:
    """variant -> weight, read from the HTTPRoute's backendRefs now (``set_traffic`` may have
    changed them since deploy). A backendRef without a weight weighs 1 (Gateway API default)."""
    by_svc = {svc: v for v, svc in h.extra["variants"].items()}
    route = _route(cluster, h)
    return {by_svc[b["name"]]: int(b.get("weight", 1))
            for rule in route["spec"].get("rules", []) for b in rule.get("backendRefs", []) if b["name"] in by_svc}


def invoke(cluster: Any, h: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
           timeout: float = 60.0, rng: Optional[random.Random] = None) -> InvokeResult:
    """POST ``payload`` to ``/predict`` of one variant's Service through the API server's service
    proxy, and report that variant.

    The HTTPRoute splits traffic at the Gateway, which the API server's proxy does not pass; so the
    variant is chosen here: ``variant`` when given (pinned, whatever its weight), else at random
    with the HTTPRoute's current weights (one GET of the route per call).

    Raises:
        UsageError: an unknown ``variant``; a payload that is not JSON.
        NotFound: the HTTPRoute or the variant's Service does not exist.
        TargetError: every weight is 0; the server answered an error (``HTTP <status>: <message>``);
            no answer within ``timeout`` seconds.
    """
    variants: dict[str, str] = h.extra["variants"]
    ns = h.extra["namespace"]
    if variant is not None:
        if variant not in variants:
            import difflib

            close = difflib.get_close_matches(variant, list(variants), n=1)
            raise UsageError(f"endpoint {h.name} has no variant '{variant}'; it has {', '.join(variants)}"
                             + (f" (did you mean '{close[0]}'?)" if close else ""))
        chosen = variant
    else:
        weights = _weights(cluster, h)
        if not any(weights.values()):
            raise TargetError(f"endpoint {h.name} sends no traffic anywhere: every variant has weight 0 "
                              "(unijob traffic NAME VARIANT=100)")
        names = list(weights)
        chosen = (rng or random).choices(names, weights=[weights[n] for n in names])[0]
    encode_payload(payload)
    svc = variants[chosen]
    t0 = time.perf_counter()
    status, data = cluster.service_post(svc, SERVICE_PORT, ns, SERVE_PREDICT, payload, timeout=timeout)
    latency = time.perf_counter() - t0
    text = data.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        body = text
    if status >= 400:
        if isinstance(body, dict) and body.get("kind") == "Status":  # the API server's own answer
            if status == 404:
                raise NotFound(f"Service {ns}/{svc} of endpoint {h.name} does not exist: {body.get('message', '')}")
            msg = body.get("message") or body.get("reason") or ""
        elif isinstance(body, dict) and "error" in body:  # unijob.serve's {"error": message}
            msg = body["error"] if isinstance(body["error"], str) else json.dumps(body["error"])
        else:
            msg = text[:300]
        raise TargetError(f"endpoint {h.name} variant {chosen} answered HTTP {status}: {msg}")
    return InvokeResult(body=body, variant=chosen, latency_seconds=latency)


def set_traffic(cluster: Any, h: EndpointHandle, split: Mapping[str, int]) -> None:
    """Rewrite the HTTPRoute's backendRef weights (GET, then PUT with its resourceVersion).

    Raises:
        UsageError: a bad split (see :func:`unijob.contract.validate_split`).
    """
    full = validate_split(split, list(h.extra["variants"]))
    route = _route(cluster, h)
    by_svc = {svc: v for v, svc in h.extra["variants"].items()}
    for rule in route["spec"].get("rules", []):
        for b in rule.get("backendRefs", []):
            if b["name"] in by_svc:
                b["weight"] = full[by_svc[b["name"]]]
    cluster.replace(route, h.extra["namespace"])


def undeploy(cluster: Any, h: EndpointHandle) -> None:
    """Delete the route first (no traffic to dying pods), then HPAs, Services, Deployments."""
    for api_version, kind, name in reversed(h.extra.get("objects") or []):
        cluster.delete(api_version, kind, name, h.extra["namespace"])
