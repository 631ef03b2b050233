"""unijob: one vendor-neutral job spec, many ML platforms, and what each costs.

Importing :mod:`unijob` is cheap: it pulls in no cloud SDK and not even pydantic. The library API
is loaded on first use (a module-level ``__getattr__``)::

    import unijob

    spec = unijob.load("examples/quickstart/job.yaml")     # or unijob.JobSpec(name=..., script=...)
    job = unijob.submit(spec, wait=True)                   # -> Job; job.state is a JobState
    ep = unijob.deploy("examples/quickstart/endpoint.yaml")
    ep.invoke([[0.0] * 64]).predictions

The public pieces live in submodules:

- :mod:`unijob.api` -- the library the CLI runs: load, plan, submit, job(s), deploy, endpoint(s).
- :mod:`unijob.spec` -- the :class:`~unijob.spec.JobSpec` model.
- :mod:`unijob.loading` -- YAML loading with file:line:column errors.
- :mod:`unijob.contract` -- the adapter contract every backend implements.
- :mod:`unijob.registry` -- adapter discovery through the ``unijob.adapters`` entry-point group.
- :mod:`unijob.runtime` -- what training code imports (rank, world size, checkpoints, preemption).
- :mod:`unijob.cost` -- the dated price catalog, per-target cost and the build-vs-buy break-even.
"""

__version__ = "0.1.0"

#: public name -> "module:attribute" it is loaded from on first use
_LAZY = {
    "JobSpec": "unijob.spec:JobSpec",
    "Plan": "unijob.contract:Plan",
    "JobState": "unijob.contract:JobState",
    "JobStatus": "unijob.contract:JobStatus",
    "EndpointStatus": "unijob.contract:EndpointStatus",
    "InvokeResult": "unijob.contract:InvokeResult",
    "load": "unijob.api.specs:load",
    "plan": "unijob.api.specs:plan",
    "targets": "unijob.api.specs:targets",
    "submit": "unijob.api.jobs:submit",
    "batch_predict": "unijob.api.jobs:batch_predict",
    "job": "unijob.api.jobs:job",
    "jobs": "unijob.api.jobs:jobs",
    "Job": "unijob.api.jobs:Job",
    "deploy": "unijob.api.endpoints:deploy",
    "endpoint": "unijob.api.endpoints:endpoint",
    "endpoints": "unijob.api.endpoints:endpoints",
    "Endpoint": "unijob.api.endpoints:Endpoint",
    "breakeven": "unijob.cost.report:breakeven",
    "load_pipeline": "unijob.pipeline.loading:load_pipeline",
    "run_pipeline": "unijob.pipeline.runs:run",
    "pipeline_run": "unijob.pipeline.runs:run_of",
    "pipeline_runs": "unijob.pipeline.runs:runs",
    "start_managed_pipeline": "unijob.pipeline.managed:start",
    "pipeline_execution": "unijob.pipeline.managed:execution",
}

__all__ = ["__version__", "cost", *_LAZY]


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name not in _LAZY:
        # a subpackage not imported yet: unijob.cost (callable: unijob.cost(spec)), unijob.models...
        if not name.startswith("_") and importlib.util.find_spec(f"unijob.{name}") is not None:
            return importlib.import_module(f"unijob.{name}")
        raise AttributeError(f"module 'unijob' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
