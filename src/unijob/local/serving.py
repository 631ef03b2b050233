"""The local target's endpoint plan: one ``local:deploy`` request, run by :mod:`unijob.local.router`.

Body (JSON)::

    {"name": "digits", "endpoint_dir": "<home>/local/endpoints/digits",
     "host": "127.0.0.1", "port": null, "python": "/usr/bin/python3", "cwd": "<spec dir>",
     "variants": [{"name": "blue", "weight": 90, "handler": "serve.py:Predictor",
                   "model": "/abs/path/output"}, ...],
     "min_replicas": 1, "max_replicas": 4,
     "autoscaling": {"metric": "concurrency", "target": 4.0}, "autoscaling_window": 10,
     "scale_in_cooldown": 300, "scale_out_cooldown": 60,
     "deploy_timeout": 120, "request_timeout": 60, "env": {...}}

Durations are seconds. Handlers and relative model paths resolve against the spec's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources
from unijob.errors import SpecError
from unijob.local.options import LocalOptions
from unijob.local.plan import local_path
from unijob.paths import home

API = "local:deploy"
METRICS = ("concurrency", "invocations_per_replica_per_minute")


def endpoints_dir(*, create: bool = True) -> Path:
    """``<home>/local/endpoints``: one directory per local endpoint, named after it."""
    d = home(create=create) / "local" / "endpoints"
    if create:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def plan_endpoint(spec: Any, opts: LocalOptions) -> Plan:
    """The local endpoint's plan. Pure.

    Raises:
        SpecError: no endpoint section; a variant with an ``image`` or without a ``handler``
            (at that variant's field); an autoscaling metric the router cannot measure.
    """
    ep = spec.endpoint
    if ep is None:
        raise SpecError.at(("endpoint",), "this spec has no endpoint section")
    if ep.autoscaling.metric not in METRICS:
        raise SpecError.at(("endpoint", "autoscaling", "metric"),
                           f"local endpoints scale on {' or '.join(METRICS)}; "
                           f"{ep.autoscaling.metric} is not measured on this machine", "concurrency")
    warnings: list[str] = []
    notes: list[str] = []
    variants = []
    for i, v in enumerate(ep.resolved_variants()):
        loc = ("endpoint", "variants", i) if ep.variants else ("endpoint",)
        if v.image or not v.handler:
            raise SpecError.at(loc + ("image" if v.image else "handler",),
                               "the local target serves unijob handlers (module:attr or file.py:Class); "
                               "images need a container runtime this target does not use")
        model = None
        if v.model:
            model = local_path(spec, v.model) or v.model
            try:
                missing = "://" not in model and not Path(model).exists()
            except OSError as e:  # e.g. a name over the file system's limit
                shown = model if len(model) <= 80 else model[:77] + "..."
                raise SpecError.at(loc + ("model",), f"model path {shown} cannot be used here: {e.strerror}") from None
            if missing:
                warnings.append(f"variant {v.name}: model {model} does not exist yet (train first?); "
                                "its replicas will fail to start until it does")
        if v.accelerator:
            warnings.append(f"variant {v.name}: the local target assigns no accelerators; replicas run on CPU")
        variants.append({"name": v.name, "weight": v.weight, "handler": v.handler, "model": model})
    name = ep.name or spec.name
    body = {
        "name": name, "endpoint_dir": str(endpoints_dir(create=False) / name),
        "host": opts.endpoint_host, "port": opts.endpoint_port, "python": opts.python,
        "cwd": str(spec.base_dir), "variants": variants,
        "min_replicas": ep.min_replicas, "max_replicas": ep.max_replicas,
        "autoscaling": {"metric": ep.autoscaling.metric, "target": ep.autoscaling.target},
        "autoscaling_window": opts.autoscaling_window,
        "scale_in_cooldown": ep.scale_in_cooldown, "scale_out_cooldown": ep.scale_out_cooldown,
        "deploy_timeout": opts.deploy_timeout, "request_timeout": opts.request_timeout,
        "env": dict(sorted(ep.env.items())),
    }
    split = ", ".join(f"{v['name']}={v['weight']}%" for v in variants)
    notes.append(f"{ep.min_replicas}-{ep.max_replicas} replicas per variant on {ep.autoscaling.metric} "
                 f"target {ep.autoscaling.target:g}; traffic {split}")
    if ep.min_replicas == 0:
        notes.append("min_replicas 0: a variant's first request starts a replica and waits for it (cold start)")
    return Plan(target="local", kind="endpoint", name=name, submission_id=name,
                requests=[NativeRequest(api=API, body=body, when="deploy",
                                        note="a router process and `python -m unijob.serve` replicas on this machine")],
                resources=PlanResources(service="local", instance_type="localhost",
                                        instance_count=ep.min_replicas * len(variants)),
                notes=notes, warnings=warnings, extra={"endpoint_dir": body["endpoint_dir"]})
