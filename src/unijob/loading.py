"""Load a YAML spec file into a :class:`~unijob.spec.JobSpec`, with errors a person can act on.

Every error names ``file:line:column``, the field path, what was expected, and the closest valid
key ("did you mean 'accelerator'?"). YAML is read with ``yaml.SafeLoader`` only (no Python tags).
Per-target option blocks are validated by the options model of the adapter that owns the target,
loaded through the registry without importing any cloud SDK.

Usage::

    loaded = load_spec("examples/quickstart/job.yaml")
    loaded.spec          # the JobSpec
    loaded.locate(loc)   # (file, line, column) of a field path, for adapters' SpecErrors
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from unijob.errors import SpecError, SpecIssue
from unijob.spec import JobSpec

Loc = tuple[Any, ...]


@dataclass
class LoadedSpec:
    """A validated spec plus what is needed to point at its source lines.

    Attributes:
        spec: the validated JobSpec.
        path: the file it came from.
        text: the file's text.
        data: the plain data YAML gave (before validation).
    """

    spec: JobSpec
    path: Path
    text: str
    data: dict[str, Any]
    _root: Any = None

    def locate(self, loc: Sequence[Any]) -> tuple[str, int | None, int | None]:
        """(file, line, column) of the deepest node that exists on ``loc`` (1-based)."""
        return str(self.path), *_node_position(self._root, loc)


def _node_position(root: Any, loc: Sequence[Any]) -> tuple[int | None, int | None]:
    node = root
    best = node
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    best = k  # point at the key: that is where the user looks
                    break
            if nxt is None:
                break
            node = nxt
            if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
                best = node if best is None else best
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node
        else:
            break
    if best is None:
        return None, None
    return best.start_mark.line + 1, best.start_mark.column + 1


def _unwrap_model(ann: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _unwrap_model(arg)
        if m is not None:
            return m
    return None


def _close(word: str, options: Sequence[str]) -> str | None:
    hits = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return hits[0] if hits else None


def issues_from_validation(err: ValidationError, *, prefix: Loc = (), model: type[BaseModel] | None = None) -> list[SpecIssue]:
    """Turn a pydantic ValidationError into SpecIssues with did-you-mean suggestions.

    Args:
        prefix: field path of the validated block inside the spec (e.g. ``("targets", "local")``).
        model: the model that was validated (default :class:`JobSpec`), for unknown-key suggestions.

    Never reads the rejected input for anything under ``secrets`` (it may be a secret).
    """
    issues: list[SpecIssue] = []
    for e in err.errors(include_url=False):
        rel = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(prefix) + rel
        etype, msg = e["type"], e["msg"]
        ctx = e.get("ctx") or {}
        suggestion = ctx.get("suggestion")
        if etype == "extra_forbidden":
            owner = _owner_in(model or JobSpec, rel)
            valid = list(owner.model_fields) if owner else []
            suggestion = _close(str(loc[-1]), valid)
            msg = "unknown field" + (f"; expected one of: {', '.join(valid)}" if valid and not suggestion else "")
        elif etype == "missing":
            msg = "required field is missing"
        elif etype == "literal_error":
            expected = ctx.get("expected", "")
            msg = f"expected {expected}"
            if loc[:1] != ("secrets",):
                options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
                suggestion = _close(str(e.get("input")), options)
        elif etype == "string_pattern_mismatch" and loc == ("name",):
            msg = "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric"
        issues.append(SpecIssue(loc, msg, suggestion))
    return issues


def _owner_in(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (relative to ``model``)."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or cur is None:
            continue
        f = cur.model_fields.get(part)
        cur = _unwrap_model(f.annotation) if f else None
    return cur


def parse_yaml(text: str, path: str) -> tuple[Any, Any]:
    """(data, node tree) of YAML text, SafeLoader only.

    Raises:
        SpecError: YAML syntax errors, with the line and column YAML reports.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError([SpecIssue((), f"not valid YAML: {problem}", None, path,
                                   mark.line + 1 if mark else None, mark.column + 1 if mark else None)]) from None
    return data, root


def load_spec(path: str | Path, *, check_targets: bool = True, check_paths: bool = True) -> LoadedSpec:
    """Read, parse and validate a spec file.

    Args:
        path: the YAML file.
        check_targets: validate each ``targets.<name>`` block with that adapter's options model
            (unknown target names are errors with a did-you-mean).
        check_paths: require ``script``/``source_dir``/``requirements`` to exist.

    Returns:
        LoadedSpec with the validated spec.

    Raises:
        SpecError: with file:line:column, field path, what was expected and a close match.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue((), "no such spec file", None, str(p))]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise SpecError([SpecIssue((), f"cannot read spec file: {e.__class__.__name__}", None, str(p))]) from None
    data, root = parse_yaml(text, str(p))
    if data is None:
        raise SpecError([SpecIssue((), "the file is empty; a spec needs at least 'name' and an entrypoint", None, str(p), 1, 1)])
    if not isinstance(data, dict):
        raise SpecError([SpecIssue((), f"expected a mapping of spec fields at the top level, got {type(data).__name__}",
                                   None, str(p), 1, 1)])
    loaded = LoadedSpec(spec=None, path=p, text=text, data=data, _root=root)  # type: ignore[arg-type]
    try:
        spec = JobSpec.model_validate(data, context={"base_dir": p.parent.resolve(), "check_paths": check_paths})
    except ValidationError as e:
        raise SpecError(issues_from_validation(e)).locate(loaded.locate) from None
    spec._source_file = p.resolve()
    loaded.spec = spec
    if check_targets:
        validate_targets(spec, locate=loaded.locate)
    return loaded


def validate_targets(spec: JobSpec, *, locate=None) -> None:
    """Validate every ``targets.<name>`` block against its adapter's options model.

    Raises:
        SpecError: unknown target (with did-you-mean) or options the adapter's model rejects.
    """
    from unijob import registry

    issues: list[SpecIssue] = []
    known = registry.names()
    for name, block in spec.targets.items():
        if name not in known:
            issues.append(SpecIssue(("targets", name), f"unknown target; installed targets: {', '.join(sorted(known))}",
                                    _close(name, sorted(set(known) | set(registry.KNOWN_TARGETS)))))
            if name in registry.KNOWN_TARGETS:
                issues[-1].message = (f"target '{name}' is not installed here: "
                                      f"pip install {registry.KNOWN_TARGETS[name]}")
                issues[-1].suggestion = None
            continue
        try:
            model = registry.options_model(name)
        except Exception as e:  # a broken adapter: say so, do not crash
            issues.append(SpecIssue(("targets", name), getattr(e, "message", str(e))))
            continue
        try:
            model.model_validate(block or {})
        except ValidationError as e:
            issues.extend(issues_from_validation(e, prefix=("targets", name), model=model))
    if issues:
        err = SpecError(issues)
        raise err.locate(locate) if locate else err
