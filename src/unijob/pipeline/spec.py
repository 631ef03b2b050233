"""The pipeline spec: steps (a training job, a model registration, a batch prediction, an endpoint
deployment) joined into a DAG by ``depends_on`` and by the references they make to each other.

::

    name: digits-pipeline
    parameters: {epochs: 10, min_accuracy: 0.95}
    schedule: "0 3 * * 1"                  # optional cron (minute hour day month weekday)
    steps:
      - name: train
        job: ../quickstart/job.yaml          # a job spec file (relative to this file) or inline
        with: {hyperparameters: {epochs: "{{ params.epochs }}"}}
      - name: evaluate
        job: evaluate.yaml
        with: {inputs: {model: "{{ steps.train.outputs.model }}"}}
      - name: register
        when: "steps.evaluate.metrics.accuracy >= params.min_accuracy"
        register: {model: "{{ steps.train.outputs.model }}", name: digits, alias: candidate}
      - name: deploy
        deploy: endpoint.yaml
        depends_on: [register]
        retries: 1

A reference (``{{ params.NAME }}``, ``{{ steps.STEP.outputs.NAME }}``,
``{{ steps.STEP.metrics.NAME }}``) makes the step depend on the step it names. A string that is
only a reference takes the referenced value's type; a reference inside a longer string is
formatted into it. Outputs: a job step has ``model`` (the artifact its target reports), ``output``
and ``job_id``; a batch step ``output`` and ``job_id``; a register step ``version``, ``uri``
(``models:/NAME/VERSION``) and ``name``; a deploy step ``endpoint``. Metrics are what the job's
code reported with :func:`unijob.runtime.log_metrics`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from unijob.pipeline import expr

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
#: What each step kind outputs (``steps.X.outputs.NAME``).
OUTPUTS = {"job": {"model", "output", "job_id"}, "batch": {"output", "job_id"},
           "register": {"version", "uri", "name"}, "deploy": {"endpoint"}}
_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")
MAX_STEPS = 200


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Register(_M):
    """Register a model version: ``model`` (usually ``{{ steps.train.outputs.model }}``) as the next
    version of ``name``, optionally pointing ``alias`` at it and approving it."""

    model: str
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    alias: Optional[str] = None
    approve: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)


class Step(_M):
    """One pipeline step: exactly one of ``job``, ``register``, ``batch``, ``deploy``.

    Attributes:
        name: DNS label, unique in the pipeline.
        job / batch / deploy: a spec file (relative to the pipeline file) or an inline spec; a
            batch spec needs a ``batch:`` section, a deploy spec an ``endpoint:`` section.
        with_: (``with``) fields merged into that spec (dicts merged key by key), templates allowed.
        register_: (``register``) see :class:`Register`.
        depends_on: steps that must end first (references add their steps too).
        when: a condition (:mod:`unijob.pipeline.expr`); false -> the step and the steps that
            depend on it are SKIPPED.
        retries: how many more times a failed step is run (0-10).
        target: where this step runs; default the pipeline's target.
    """

    name: str = Field(pattern=NAME, max_length=63)
    job: Optional[Union[str, dict[str, Any]]] = None
    batch: Optional[Union[str, dict[str, Any]]] = None
    deploy: Optional[Union[str, dict[str, Any]]] = None
    register_: Optional[Register] = Field(default=None, alias="register")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    depends_on: list[str] = Field(default_factory=list)
    when: Optional[str] = None
    retries: int = Field(default=0, ge=0, le=10)
    target: Optional[str] = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def kind(self) -> str:
        return next(k for k in ("job", "batch", "deploy", "register") if self.section(k) is not None)

    def section(self, kind: str) -> Any:
        """The step's ``job``, ``batch``, ``deploy`` or ``register`` value (None when absent)."""
        return self.register_ if kind == "register" else getattr(self, kind)

    @model_validator(mode="after")
    def _one_kind(self) -> "Step":
        kinds = [k for k in ("job", "batch", "deploy", "register") if self.section(k) is not None]
        if len(kinds) != 1:
            raise PydanticCustomError("step_kind", "a step is exactly one of job, batch, deploy or register; got {got}",
                                      {"got": ", ".join(kinds) or "none"})
        if self.with_ and self.register_ is not None:
            raise PydanticCustomError("step_kind", "'with' goes with job, batch and deploy steps")
        return self

    @field_validator("when")
    @classmethod
    def _parses(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                expr.parse(v)
            except expr.ExprError as e:
                raise PydanticCustomError("condition", "{msg}", {"msg": str(e)}) from None
        return v


class PipelineSpec(_M):
    """A pipeline: parameters, steps, an optional cron schedule, and ``targets`` blocks given to
    every step's spec (a step spec's own block wins, key by key)."""

    name: str = Field(pattern=NAME, max_length=63)
    description: Optional[str] = None
    parameters: dict[str, Union[bool, int, float, str]] = Field(default_factory=dict)
    schedule: Optional[str] = None
    target: str = "local"
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    kind: Literal["pipeline"] = "pipeline"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not CRON.match(v.strip()):
            raise PydanticCustomError("cron", "'{v}' is not a cron schedule: five fields, minute hour day month weekday "
                                      "(e.g. '0 3 * * 1')", {"v": v})
        return v

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`PipelineSpec` (draft 2020-12), as written to ``specs/pipeline.schema.json``."""
    schema = PipelineSpec.model_json_schema(mode="validation", by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://unijob.dev/schemas/pipeline.schema.json"
    return schema


def templates(value: Any) -> list[str]:
    """The reference texts of every ``{{ ... }}`` in ``value`` (strings in nested dicts/lists)."""
    if isinstance(value, str):
        return TEMPLATE.findall(value)
    if isinstance(value, dict):
        return [t for v in value.values() for t in templates(v)]
    if isinstance(value, list):
        return [t for v in value for t in templates(v)]
    return []


def step_refs(step: Step) -> list[tuple[str, expr.Ref]]:
    """``(where, ref)`` of every reference the step makes: in its condition, its ``with`` and its
    register fields. Raises ExprError for a template that is not a reference."""
    out: list[tuple[str, expr.Ref]] = []
    if step.when:
        out += [("when", r) for r in expr.refs(expr.parse(step.when))]
    fields = {"with": step.with_} if step.with_ else {}
    if step.register_ is not None:
        fields["register"] = step.register_.model_dump()
    for where, value in fields.items():
        for text in templates(value):
            out.append((where, expr.check_ref(tuple(text.split(".")), "{{ " + text + " }}")))
    for kind in ("job", "batch", "deploy"):
        inline = getattr(step, kind)
        if isinstance(inline, dict):
            for text in templates(inline):
                out.append((kind, expr.check_ref(tuple(text.split(".")), "{{ " + text + " }}")))
    return out
