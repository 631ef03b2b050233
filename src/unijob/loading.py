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
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from unijob.bundle import written_locations
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


# ---- reading a spec file: the one place, with limits ----------------------------------------
#
# Every command reads specs through load_spec -> read_spec_text -> parse_yaml, so these limits hold
# for the next command too. They are far above any real spec (the examples are under 2 KiB) and
# keep a hostile file cheap to refuse: a 256 KiB file parses in ~0.15 s with libyaml at worst.

MAX_SPEC_BYTES = 256 * 1024
"""Largest spec file read, in bytes. A spec is a few KiB; the largest native request it becomes is
smaller still (SageMaker caps hyperparameters at 100 x 2,500 chars, a Kubernetes object at 1.5 MiB
in etcd). 256 KiB leaves 100x room and bounds the parse (PyYAML's pure-Python parser needs ~1 s
per MiB; a 10 MB file took 7-16 s to be refused before this limit)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists. Real specs nest under 10 levels (a Kubernetes pod
override is the deepest); Python's recursion limit (1,000 frames) broke at ~500 before this."""
MAX_NODES = 100_000
"""Most values a spec may hold once aliases are expanded: bounds "billion laughs" alias bombs,
whose expansion (in JSON for hyperparameters, in every target's request) would fill memory."""
INT_BITS = 64
"""Integers fit in signed 64 bits, what every target's API takes (protobuf int64, JSON numbers
read as int64/float64); also keeps Python's 4,300-digit int conversion limit out of reach."""
_INT_MAX_CHARS = 32  # an int literal longer than this is out of 64-bit range: refused before int()

_INT_TAG = "tag:yaml.org,2002:int"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~30x faster, same SafeLoader rules


def _refuse(path: str, message: str, line: int | None = None, column: int | None = None) -> SpecError:
    return SpecError([SpecIssue((), message, None, path, line, column)])


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file: a regular file of at most :data:`MAX_SPEC_BYTES`, UTF-8.

    Devices (``/dev/zero``), named pipes, sockets and directories are refused before being read,
    also through a symlink, so a spec path never blocks or reads without end.

    Raises:
        SpecError: missing, not a regular file, unreadable, too large, or not UTF-8 (with the
            line and column of the first bad byte).
    """
    p = str(path)
    try:
        st = os.stat(p)
        if stat.S_ISREG(st.st_mode):  # only then open: opening a device or a FIFO may block or act
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _refuse(p, "no such spec file") from None
    except (OSError, ValueError) as e:  # permission, symlink loop, NUL in the path...
        raise _refuse(p, f"cannot read spec file: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        target = f" -> {os.path.realpath(p)}" if os.path.islink(p) else ""
        raise _refuse(p, f"not a regular file ({_file_kind(st.st_mode)}{target}); a spec is a regular YAML file")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # the file opened, not the one stat()ed: it may have been swapped
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(p, f"not a regular file ({_file_kind(st.st_mode)}); a spec is a regular YAML file")
        if st.st_size > MAX_SPEC_BYTES:
            raise _refuse(p, f"the file is {st.st_size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,} bytes "
                             "(256 KiB)")
        data = f.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:  # it grew while being read
        raise _refuse(p, f"the file is over {MAX_SPEC_BYTES:,} bytes; a spec may be at most "
                         f"{MAX_SPEC_BYTES:,} bytes (256 KiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise _refuse(p, f"not UTF-8: byte 0x{data[e.start]:02x} cannot start or continue a UTF-8 "
                         "character; save the spec as UTF-8", line, column) from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_events(text: str, path: str) -> None:
    """Enforce :data:`MAX_DEPTH`, :data:`MAX_NODES` and the integer size on YAML's event stream
    (an iterative parser: it never recurses, unlike composing nodes)."""
    resolver = yaml.resolver.Resolver()
    depth = 0
    counts: list[list[Any]] = [[0, None]]  # per open collection: [values inside, its anchor]
    sizes: dict[str, int] = {}  # anchor -> values inside it, aliases expanded
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(path, f"nested more than {MAX_DEPTH} levels deep; a spec may nest at most "
                                    f"{MAX_DEPTH} levels of mappings and lists", *_pos(ev))
            counts.append([1, ev.anchor])
            continue
        if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            n, anchor = counts.pop()
            if anchor is not None:
                sizes[anchor] = n
            counts[-1][0] += n
        elif isinstance(ev, yaml.ScalarEvent):
            tag = ev.tag if ev.tag not in (None, "!") else resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit)
            if tag == _INT_TAG and len(ev.value) > _INT_MAX_CHARS:
                raise _refuse(path, f"an integer of {len(ev.value):,} characters; a spec's integers fit in "
                                    f"{INT_BITS} bits (at most 19 digits)", *_pos(ev))
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
            counts[-1][0] += 1
        elif isinstance(ev, yaml.AliasEvent):
            if any(c[1] == ev.anchor for c in counts):
                raise _refuse(path, f"the alias *{ev.anchor} is inside its own anchor &{ev.anchor}: a value "
                                    "that contains itself has no end as JSON", *_pos(ev))
            counts[-1][0] += sizes.get(ev.anchor, 1)
        else:
            continue
        if counts[-1][0] > MAX_NODES or sum(c[0] for c in counts) > MAX_NODES:
            raise _refuse(path, f"more than {MAX_NODES:,} values once aliases (*name) are expanded; a spec "
                                f"may hold at most {MAX_NODES:,}", *_pos(ev))


def _pos(event: Any) -> tuple[int, int]:
    return event.start_mark.line + 1, event.start_mark.column + 1


def _check_data(data: Any, path: str, locate) -> None:
    """Values a spec may hold: JSON's (string, number, boolean, null, list, mapping with string
    keys), finite numbers, integers within :data:`INT_BITS` bits. YAML's dates, binary, sets and
    ``.inf``/``.nan`` are refused where they are, since every target gets the spec as JSON."""
    limit = 1 << (INT_BITS - 1)
    stack: list[tuple[Any, Loc]] = [(data, ())]
    seen: set[int] = set()  # aliases share objects: check each once
    issues: list[SpecIssue] = []
    while stack and len(issues) < 20:
        value, loc = stack.pop()
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    issues.append(SpecIssue(loc, f"a mapping key is {_kind(k)} {k!r}; keys are strings "
                                                 f"(quote it: \"{k}\")"))
                    continue
                stack.append((v, (*loc, k)))
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if not -limit <= value < limit:
                issues.append(SpecIssue(loc, f"integer out of range; a spec's integers fit in {INT_BITS} bits "
                                             f"(-2**{INT_BITS - 1} .. 2**{INT_BITS - 1}-1)"))
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                issues.append(SpecIssue(loc, f"{value} is not a finite number; a spec's numbers are sent as "
                                             "JSON, which has no infinity or NaN"))
        else:
            issues.append(SpecIssue(loc, f"{_kind(value)} is not a spec value; expected a string, number, "
                                         "boolean, null, list or mapping (quote it to make it a string)"))
    if issues:
        raise SpecError(issues).locate(locate)


def _kind(value: Any) -> str:
    return {"bool": "a boolean", "int": "an integer", "float": "a number", "NoneType": "null", "date": "a date",
            "datetime": "a timestamp", "bytes": "!!binary data", "set": "a !!set", "tuple": "a !!pairs entry",
            "list": "a list", "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


def parse_yaml(text: str, path: str) -> tuple[Any, Any]:
    """(data, node tree) of YAML text, SafeLoader rules only, within :data:`MAX_DEPTH` and
    :data:`MAX_NODES`, with integers of at most 64 bits.

    Raises:
        SpecError: YAML syntax errors, with the line and column YAML reports; a limit exceeded
            (with the line where it was); a value that is not JSON data (a date, ``.inf``...).
    """
    try:
        _check_events(text, path)
        root = yaml.compose(text, Loader=_Loader)
        data = None if root is None else _Loader("").construct_document(root)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = column = None
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
        elif isinstance(getattr(e, "position", None), int):  # a ReaderError: a character YAML refuses
            line = text.count("\n", 0, e.position) + 1
            column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise _refuse(path, f"not valid YAML: {problem}", line, column) from None
    except ValueError as e:  # e.g. a constructor's int()/float() of a literal no limit above caught
        raise _refuse(path, f"not valid YAML: {e}") from None
    _check_data(data, path, lambda loc: (path, *_node_position(root, loc)))
    return data, root


def is_pipeline_file(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a pipeline (a top-level ``steps`` list) rather than a
    job spec. Reads it with the same limits as every spec (and raises their SpecError).

    It lives here, not in :mod:`unijob.pipeline.loading`, so that ``unijob plan`` of a job spec does
    not build the pipeline models to find out that it is not one.
    """
    data, _ = parse_yaml(read_spec_text(Path(path)), str(path))
    return isinstance(data, dict) and isinstance(data.get("steps"), list)


def load_spec(path: str | Path, *, check_targets: bool = True, check_paths: bool = True) -> LoadedSpec:
    """Read, parse and validate a spec file; every command reads specs through here.

    Args:
        path: the YAML file: a regular file of at most :data:`MAX_SPEC_BYTES`, UTF-8 (see
            :func:`read_spec_text` and :func:`parse_yaml` for the limits).
        check_targets: validate each ``targets.<name>`` block with that adapter's options model
            (unknown target names are errors with a did-you-mean).
        check_paths: require ``script``/``source_dir``/``requirements`` to exist.

    Returns:
        LoadedSpec with the validated spec.

    Raises:
        SpecError: with file:line:column, field path, what was expected and a close match.
    """
    p = Path(path)
    text = read_spec_text(p)
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
    spec._file_writes = written_locations(data)  # kept by model_copy, when a caller replaces output
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
