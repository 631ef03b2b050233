"""What one pipeline step does on its target: template substitution, building the step's spec,
starting it, and reading back its outputs and metrics. Used by the local DAG runner."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from unijob.errors import UnijobError, UsageError
from unijob.pipeline import expr
from unijob.pipeline.spec import TEMPLATE, Step

Lookup = Callable[[expr.Ref], Any]


class StepError(UnijobError):
    """A step could not be started or read back (the message says which step and why)."""

    exit_code = 1


def render(value: Any, lookup: Lookup) -> Any:
    """``value`` with every ``{{ ref }}`` replaced: a string that is one template becomes the
    referenced value (typed); a template inside a longer string is formatted into it."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value.strip())
        if whole:
            return lookup(expr.check_ref(tuple(whole.group(1).split(".")), value))
        return TEMPLATE.sub(lambda m: str(lookup(expr.check_ref(tuple(m.group(1).split(".")), value))), value)
    if isinstance(value, dict):
        return {k: render(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, lookup) for v in value]
    return value


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: dicts key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def build_spec(step: Step, base_dir: Path, lookup: Lookup, run_id: str,
               targets: Optional[Mapping[str, Any]] = None) -> Any:
    """The JobSpec a job/batch/deploy step runs: its file or inline spec, ``with`` merged in,
    templates rendered, validated (relative paths against the file's directory).

    Raises:
        SpecError: the merged spec does not validate (with the step's name).
    """
    from pydantic import ValidationError

    from unijob.bundle import written_locations
    from unijob.errors import SpecError
    from unijob.loading import issues_from_validation, parse_yaml, read_spec_text
    from unijob.spec import JobSpec

    value = step.section(step.kind)
    file_writes: tuple[str, ...] = ()
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base_dir / value
        data, _ = parse_yaml(read_spec_text(path), str(path))
        spec_dir = path.parent.resolve()
        file_writes = written_locations(data)
    else:
        data, spec_dir = dict(value), base_dir
    if targets:
        data = merge({"targets": dict(targets)}, data)
    data = render(merge(data, step.with_), lookup)
    try:
        spec = JobSpec.model_validate(data, context={"base_dir": spec_dir})
    except ValidationError as e:
        issues = issues_from_validation(e)
        raise SpecError.at(("steps", step.name, step.kind),
                           f"step '{step.name}': " + "; ".join(f"{'.'.join(map(str, i.loc))}: {i.message}" for i in issues)) from None
    spec._file_writes = file_writes
    return spec



def job_outputs(job: Any) -> dict[str, Any]:
    """A finished job step's outputs: ``job_id``, ``output`` and ``model`` where its target says."""
    from unijob import registry

    out: dict[str, Any] = {"job_id": job.id}
    adapter = registry.get(job.target)
    try:
        out["model"] = adapter.model_artifact(job.handle)
    except UnijobError:
        pass
    try:
        loc = adapter.output_location(job.handle)
        if loc:
            out["output"] = loc
    except (UnijobError, AttributeError, NotImplementedError):
        pass
    out.setdefault("output", out.get("model"))
    return out


def job_metrics(job: Any) -> dict[str, Any]:
    """The metrics a finished job logged (:func:`unijob.runtime.log_metrics`), read back by its target."""
    from unijob import registry

    try:
        return dict(registry.get(job.target).job_metrics(job.handle))
    except (UnijobError, NotImplementedError):
        return {}


def register(step: Step, lookup: Lookup, target: str) -> dict[str, Any]:
    """Run a register step; returns its outputs."""
    import unijob.models as models

    r = step.register_
    assert r is not None
    model = render(r.model, lookup)
    meta = {k: str(render(v, lookup)) for k, v in r.metadata.items()}
    alias = render(r.alias, lookup) if r.alias else None
    v = models.register(str(model), str(render(r.name, lookup)), target=target, alias=alias, metadata=meta)
    if r.approve:
        v = models.approve(v.name, v.version, target=target)
    return {"version": v.version, "uri": v.uri, "name": v.name}


def lookup_in(params: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> Lookup:
    """A reference resolver over the run's parameters and the steps' recorded state.

    Raises (from the returned function):
        UsageError: the step has not run, or has no such output or metric (naming what it has).
    """
    def lookup(ref: expr.Ref) -> Any:
        p = ref.parts
        if p[0] == "params":
            return params[p[1]]
        st = steps.get(p[1]) or {}
        if p[2] == "state":
            return st.get("state")
        section = st.get(p[2]) or {}
        if p[3] not in section:
            have = ", ".join(sorted(section)) or "none"
            raise UsageError(f"{ref}: step '{p[1]}' ({st.get('state', 'not run')}) has no {p[2][:-1]} "
                             f"'{p[3]}' (it has: {have})")
        return section[p[3]]

    return lookup


def start_job(spec: Any, target: str, key: str, *, batch: bool = False) -> Any:
    """Submit a job or batch step (idempotent per ``key``); returns its :class:`unijob.Job`."""
    from unijob.api.jobs import submit

    return submit(spec, target, idempotency_key=key, batch=batch)


def deploy(spec: Any, target: str) -> dict[str, Any]:
    """Run a deploy step: deploy (or, when the endpoint already runs here, re-deploy) its endpoint."""
    import unijob
    from unijob.errors import NotFound

    name = spec.endpoint.name or spec.name
    try:
        unijob.endpoint(name, target).undeploy()
    except (NotFound, UsageError):
        pass
    ep = unijob.deploy(spec, target)
    return {"endpoint": ep.name}


def optional(fn: Callable[[], Any]) -> Optional[Any]:
    try:
        return fn()
    except UnijobError:
        return None
