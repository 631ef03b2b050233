"""Specs and plans as a library: :func:`load`, :func:`plan`, :func:`targets`.

A spec is a :class:`unijob.spec.JobSpec`, either read from YAML (:func:`load`, errors with
file:line:column) or built in Python (``JobSpec(name=..., script=...)``, errors with the field
path). Every function that takes a spec also takes a path, which it loads first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from unijob.errors import SpecError

if TYPE_CHECKING:
    from unijob.contract import Adapter, Plan
    from unijob.spec import JobSpec

SpecLike = Union["JobSpec", str, Path]
Locator = Callable[[Any], tuple]


def load(path: Union[str, Path], *, overrides: Optional[dict[str, dict[str, Any]]] = None) -> "JobSpec":
    """Read, parse and validate the spec file ``path`` (and each ``targets.<name>`` block).

    Args:
        overrides: merged into ``targets.<name>`` blocks after loading, e.g.
            ``{"local": {"simulate_preemption": "20s"}}``; validated like the file's own blocks.

    Returns:
        The JobSpec. Errors the targets raise for it later (at plan, submit, deploy) still point at
        the file's lines.

    Raises:
        SpecError: with file:line:column, field path, what was expected and the close match.
    """
    from unijob.loading import load_spec, validate_targets

    loaded = load_spec(path)
    spec = loaded.spec
    if overrides:
        targets = {k: dict(v) for k, v in spec.targets.items()}
        for name, block in overrides.items():
            targets.setdefault(name, {}).update(block)
        spec.targets = targets
        validate_targets(spec, locate=loaded.locate)
    spec._locate = loaded.locate  # an undeclared private attribute: pydantic stores it as is
    return spec


def as_spec(spec: SpecLike) -> "JobSpec":
    """``spec`` itself, or the spec file it names loaded with :func:`load`.

    A JobSpec built in Python gets its ``targets`` blocks validated here (a loaded one already has).

    Raises:
        SpecError: the file or a ``targets`` block is invalid. UsageError: not a spec or a path.
    """
    from unijob.spec import JobSpec

    if isinstance(spec, (str, Path)):
        return load(spec)
    if not isinstance(spec, JobSpec):
        from unijob.errors import UsageError

        raise UsageError(f"expected a JobSpec or the path of a spec file, got {type(spec).__name__}")
    if locator(spec) is None:
        from unijob.loading import validate_targets

        validate_targets(spec)
    return spec


def locator(spec: "JobSpec") -> Optional[Locator]:
    """``loc -> (file, line, column)`` for a spec read by :func:`load`; None for one built in Python."""
    return getattr(spec, "_locate", None)


def located(err: SpecError, spec: "JobSpec") -> SpecError:
    """``err`` with file:line filled in when ``spec`` came from a file."""
    loc = locator(spec)
    return err.locate(loc) if loc else err


def resolve_target(spec: "JobSpec", target: str) -> tuple[str, list[str]]:
    """The target to use and, for ``target="auto"``, the reasons for the choice (lines for people).

    ``auto`` picks the cheapest installed, ready target that can run the spec, by the
    organisation's total cost (:func:`unijob.cost.auto.choose_target`).

    Raises:
        NotReady: ``auto`` found no ready target that can run the spec (with the reasons).
    """
    if target != "auto":
        return target, []
    from unijob.cost.auto import choose_target

    choice = choose_target(spec)  # among installed, ready targets that can run it
    return choice.target, list(choice.reasons)


def default_submission_id(spec: "JobSpec") -> str:
    """The key :func:`plan` uses when none is given: derived from the spec hash, so a plan is
    reproducible; :func:`unijob.submit` uses a fresh key per submission instead."""
    return "plan-" + spec.spec_hash()[:12]


def make_plan(adapter: "Adapter", spec: "JobSpec", submission_id: str, *, endpoint: bool = False,
              batch: bool = False) -> "Plan":
    """``adapter.plan`` (or ``plan_endpoint``, or ``plan_batch``) with SpecErrors pointed at the
    spec's file and line.

    Raises:
        SpecError: the target cannot take the spec; a job plan of an endpoint-only spec;
            an accelerator the target does not offer (at ``resources.accelerator``).
    """
    try:
        if batch:
            if spec.batch is None:
                raise SpecError.at(("batch",), "this spec has no batch section")
            return adapter.plan_batch(spec, submission_id)
        if endpoint:
            if spec.endpoint is None:
                raise SpecError.at(("endpoint",), "this spec has no endpoint section")
            return adapter.plan_endpoint(spec)
        if not (spec.script or spec.image):
            raise SpecError.at((), "this spec has no job (no script or image), only an endpoint: "
                                   "`unijob deploy` serves it, `unijob plan --endpoint` shows the requests")
        return adapter.plan(spec, submission_id)
    except SpecError as e:
        raise located(e, spec) from None
    except Exception as e:
        from unijob.cost.catalog import NoOffering

        if isinstance(e, NoOffering):
            raise located(SpecError.at(("resources", "accelerator"), str(e)), spec) from None
        raise


def plan(spec: SpecLike, target: str = "local", *, endpoint: bool = False, batch: bool = False,
         idempotency_key: Optional[str] = None) -> "Plan":
    """The exact native request(s) ``spec`` becomes on ``target``; sends nothing.

    Args:
        spec: a JobSpec or the path of a spec file.
        target: an installed target name, or ``"auto"`` (the cheapest ready one; its reasons are
            the first lines of ``plan.notes``).
        endpoint: plan the endpoint deployment instead of the training job. An endpoint ``model``
            that names a job (``job:<name-or-id>``) is resolved to that job's model artifact first
            (:func:`unijob.api.models.resolve_job_models`: this reads the job records and may ask
            the job's target where its model is); a registered model (``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``) is resolved on the target's registry
            (:func:`unijob.models.resolve_endpoint_models`).
        batch: plan the batch prediction (``batch:`` section) instead; its ``model`` is resolved
            the same way.
        idempotency_key: the submission key to plan for (default derived from the spec hash).

    Returns:
        The :class:`unijob.contract.Plan`. With ``target="local"`` no cloud SDK is imported.

    Raises:
        SpecError: the spec or the target's options are invalid (file:line for loaded specs).
        UsageError / NotReady: unknown or not installed target.
    """
    from unijob import registry

    if isinstance(spec, (str, Path)):
        from unijob.loading import is_pipeline_file

        if is_pipeline_file(spec):  # a pipeline file: its compiled pipeline request on the target
            from unijob.pipeline.compile import plan_pipeline
            from unijob.pipeline.loading import load_pipeline

            pipe = load_pipeline(spec)
            try:
                return plan_pipeline(pipe, "local" if target == "auto" else target)
            except SpecError as e:
                raise (e.locate(pipe.locate) if pipe.locate else e) from None
    spec = as_spec(spec)
    target, reasons = resolve_target(spec, target)
    adapter = registry.get(target)
    notes: list[str] = []
    if endpoint or batch:
        spec, notes = resolve_models(spec, target, batch=batch)
    p = make_plan(adapter, spec, idempotency_key or default_submission_id(spec), endpoint=endpoint, batch=batch)
    if reasons or notes:
        p.notes = [*reasons, *notes, *p.notes]
    return p


def resolve_models(spec: "JobSpec", target: str, *, batch: bool = False) -> tuple["JobSpec", list[str]]:
    """``spec`` with the models of its endpoint (or, with ``batch``, of its batch section) that
    name a job (``job:``) or a registered version (``models:/``) replaced by their artifacts on
    ``target``, and one note per replacement.

    Raises:
        SpecError: at the model field (file:line for a loaded spec): no such job or version.
    """
    from unijob.api.models import resolve_job_models
    from unijob.models import resolve_endpoint_models

    if batch:
        return _resolve_batch_model(spec, target)
    spec, notes = resolve_job_models(spec, target)
    try:
        spec, used = resolve_endpoint_models(spec, target)
    except SpecError as e:
        raise located(e, spec) from None
    notes += [f"model {uri}: version {v.version} ({v.status}) of {v.name}: {v.source}" for uri, v in used.items()]
    return spec, notes


def _resolve_batch_model(spec: "JobSpec", target: str) -> tuple["JobSpec", list[str]]:
    b = spec.batch
    if b is None or not b.model or not b.model.startswith(("job:", "models:/")):
        return spec, []
    from unijob import registry
    from unijob.errors import UnijobError

    ref = b.model
    try:
        if ref.startswith("job:"):
            from unijob.api.models import artifact_of, find_job

            j = find_job(ref[4:].strip(), prefer_target=target)
            src, note = artifact_of(j), f"batch model from job {j.id} ({j.name} on {j.target})"
        else:
            from unijob import models

            v = models.resolve(ref, target=target, spec=spec)
            src = registry.get(target).model_location(v, options=registry.get(target).options(spec))
            note = f"batch model {ref}: version {v.version} ({v.status}) of {v.name}"
    except UnijobError as e:
        raise located(SpecError.at(("batch", "model"), f"{ref}: {e.message}"), spec) from None
    return spec.model_copy(update={"batch": b.model_copy(update={"model": src})}), [f"{note}: {src}"]


@dataclass
class TargetInfo:
    """One target as ``unijob targets`` shows it.

    Attributes:
        name: the ``--target`` value. installed: its adapter is installed here.
        adapter: ``module:Class`` of the installed adapter. ready: ``check()`` passed (None: not checked).
        problems: one line each (for a missing target, the ``pip install`` line). details: region,
            project... never secrets.
    """

    name: str
    installed: bool
    adapter: Optional[str] = None
    ready: Optional[bool] = None
    problems: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def targets(*, check: bool = True) -> list[TargetInfo]:
    """Installed targets (asking each whether it is ready unless ``check=False``), then the known
    targets that are not installed, with their install line. Never raises for a broken adapter."""
    from unijob import registry
    from unijob.errors import UnijobError

    rows = []
    installed = registry.describe()
    for name, where in installed.items():
        row = TargetInfo(name=name, installed=True, adapter=where)
        if check:
            try:
                r = registry.get(name).check()
                row.ready, row.problems, row.details = r.ready, list(r.problems), dict(r.details)
            except UnijobError as e:
                row.ready, row.problems = False, [e.message]
        rows.append(row)
    for name, hint in registry.KNOWN_TARGETS.items():
        if name not in installed:
            rows.append(TargetInfo(name=name, installed=False, ready=False, problems=[f"pip install {hint}"]))
    return rows
