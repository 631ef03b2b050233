"""Read a pipeline file and check its graph before anything runs: unique step names, known
dependencies, references to steps, outputs and parameters that exist, no cycle, and step specs
that load. Every problem is a :class:`~unijob.errors.SpecError` naming the step and the field
(with file:line)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from pydantic import ValidationError

from unijob.errors import SpecError
from unijob.loading import is_pipeline_file  # noqa: F401  (its home is unijob.loading, which plan imports anyway)
from unijob.pipeline import expr
from unijob.pipeline.spec import OUTPUTS, PipelineSpec, Step, step_refs


@dataclass
class Pipeline:
    """A checked pipeline: its spec, the directory relative paths resolve against, the step order
    (dependencies first) and each step's dependencies."""

    spec: PipelineSpec
    base_dir: Path
    order: list[str]
    deps: dict[str, list[str]]
    locate: Optional[Callable[[Sequence[Any]], tuple]] = None
    path: Optional[Path] = None
    data: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        return self.spec.step(name)


def load_pipeline(path: Union[str, Path]) -> Pipeline:
    """Read, validate and check the pipeline file ``path``.

    Raises:
        SpecError: with file:line, the step and the field.
    """
    from unijob.loading import issues_from_validation, parse_yaml, read_spec_text
    from unijob.loading import LoadedSpec

    p = Path(path)
    text = read_spec_text(p)
    data, root = parse_yaml(text, str(p))
    if not isinstance(data, dict):
        raise SpecError.at((), "a pipeline file is a mapping with name, parameters and steps").locate(
            lambda loc: (str(p), 1, 1))
    locate = LoadedSpec(spec=None, path=p, text=text, data=data, _root=root).locate  # type: ignore[arg-type]
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(issues_from_validation(e, model=PipelineSpec)).locate(locate) from None
    try:
        return check(spec, p.parent.resolve(), locate=locate, path=p, data=data)
    except SpecError as e:
        raise e.locate(locate) from None


def check(spec: PipelineSpec, base_dir: Path, *, locate=None, path: Optional[Path] = None,
          data: Optional[dict] = None) -> Pipeline:
    """The graph checks of :func:`load_pipeline` on an already validated spec (e.g. built in Python).

    Raises:
        SpecError: at ``steps.<i>.<field>``.
    """
    names = [s.name for s in spec.steps]
    index = {n: i for i, n in enumerate(names)}
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise SpecError.at(("steps", i, "name"), f"step name '{n}' is used twice; step names are unique")
        seen.add(n)
    deps: dict[str, list[str]] = {}
    for i, s in enumerate(spec.steps):
        mine: list[str] = []
        for j, d in enumerate(s.depends_on):
            if d not in index:
                raise SpecError.at(("steps", i, "depends_on", j), f"step '{s.name}' depends on '{d}', which is not a step",
                                   _close(d, names))
            mine.append(d)
        try:
            refs = step_refs(s)
        except expr.ExprError as e:
            raise SpecError.at(("steps", i, "with"), f"step '{s.name}': {e}") from None
        for where, ref in refs:
            loc = ("steps", i, where)
            if ref.parts[0] == "params":
                if ref.parts[1] not in spec.parameters:
                    raise SpecError.at(loc, f"step '{s.name}': {ref} names no parameter (parameters: "
                                            f"{', '.join(sorted(spec.parameters)) or 'none'})",
                                       _close(ref.parts[1], list(spec.parameters)))
                continue
            other = ref.parts[1]
            if other not in index:
                raise SpecError.at(loc, f"step '{s.name}': {ref} names no step", _close(other, names))
            if other == s.name:
                raise SpecError.at(loc, f"step '{s.name}' refers to itself ({ref})")
            kind = spec.steps[index[other]].kind
            if ref.parts[2] == "outputs" and ref.parts[3] not in OUTPUTS[kind]:
                raise SpecError.at(loc, f"step '{s.name}': {ref}: a {kind} step's outputs are "
                                        f"{', '.join(sorted(OUTPUTS[kind]))}", _close(ref.parts[3], sorted(OUTPUTS[kind])))
            if ref.parts[2] == "metrics" and kind != "job":
                raise SpecError.at(loc, f"step '{s.name}': {ref}: only job steps report metrics; '{other}' is a {kind} step")
            if other not in mine:
                mine.append(other)
        deps[s.name] = mine
        _check_step_spec(s, i, base_dir)
    order = _toposort(names, deps)
    return Pipeline(spec=spec, base_dir=base_dir, order=order, deps=deps, locate=locate, path=path, data=data or {})


def _close(word: str, options: Sequence[str]) -> Optional[str]:
    m = difflib.get_close_matches(word, list(options), n=1)
    return m[0] if m else None


def _toposort(names: list[str], deps: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            i = names.index(n)
            raise SpecError.at(("steps", i, "depends_on"), "the steps form a cycle: " + " -> ".join(cycle))
        state[n] = 1
        for d in deps[n]:
            visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in names:
        visit(n, [])
    return order


def _check_step_spec(s: Step, i: int, base_dir: Path) -> None:
    """A job/batch/deploy step's spec file exists and loads (templated specs are checked at run time)."""
    kind = s.kind
    if kind == "register":
        return
    value = s.section(kind)
    if isinstance(value, dict):
        return
    p = Path(value)
    p = p if p.is_absolute() else (base_dir / p)
    if not p.is_file():
        raise SpecError.at(("steps", i, kind), f"step '{s.name}': no spec file {p}")
    from unijob.api.specs import load

    try:
        spec = load(p)
    except SpecError as e:
        first = e.issues[0]
        raise SpecError.at(("steps", i, kind), f"step '{s.name}': {p.name}:{first.line or '?'}: "
                                               f"{'.'.join(map(str, first.loc)) or 'spec'}: {first.message}") from None
    need = {"batch": ("batch", "a batch: section"), "deploy": ("endpoint", "an endpoint: section"),
            "job": (None, "a script or an image")}[kind]
    if need[0] and getattr(spec, need[0]) is None:
        raise SpecError.at(("steps", i, kind), f"step '{s.name}': {p.name} has no {need[1]}")
    if kind == "job" and not (spec.script or spec.image):
        raise SpecError.at(("steps", i, kind), f"step '{s.name}': {p.name} has no job (no script or image)")
