"""The condition language of pipeline steps (``when:``): small, safe, and never ``eval``.

Grammar (a recursive-descent parser over a tokenizer; nothing is executed but comparisons)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := value (("==" | "!=" | "<" | "<=" | ">" | ">=") value)?
    value   := NUMBER | STRING | "true" | "false" | "null" | REF | "(" expr ")"
    REF     := params.NAME | steps.STEP.metrics.NAME | steps.STEP.outputs.NAME | steps.STEP.state

Strings are single- or double-quoted. Comparing a number with a string, or ordering ``null``, is
an evaluation error naming both values (never a silent False).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>|\(|\))
  | (?P<ref>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*)
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}
MAX_LENGTH = 1000


class ExprError(ValueError):
    """A condition that does not parse, or a reference of the wrong shape (the message says where)."""


@dataclass(frozen=True)
class Ref:
    """A reference such as ``steps.evaluate.metrics.accuracy``, as its dotted parts."""

    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.parts)


Node = Union[tuple, Ref, Any]


def check_ref(parts: tuple[str, ...], text: str) -> Ref:
    """A :class:`Ref` of an allowed shape. Raises ExprError otherwise."""
    ok = (len(parts) == 2 and parts[0] == "params") or (
        len(parts) == 4 and parts[0] == "steps" and parts[2] in ("metrics", "outputs")) or (
        len(parts) == 3 and parts[0] == "steps" and parts[2] == "state")
    if not ok:
        raise ExprError(f"'{'.'.join(parts)}' in {text!r} is not a reference: expected params.NAME, "
                        "steps.STEP.metrics.NAME, steps.STEP.outputs.NAME or steps.STEP.state")
    return Ref(parts)


def _tokens(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"a condition is at most {MAX_LENGTH} characters")
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"cannot read {text!r} at column {pos + 1}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "ref" and value in _KEYWORDS:
            kind = "kw"
        out.append((kind, value))
        pos = m.end()
    return out


def parse(text: str) -> Node:
    """The syntax tree of ``text``: ``("or"|"and", a, b)``, ``("not", a)``, ``(op, a, b)`` for
    comparisons, :class:`Ref` or a literal. Raises ExprError."""
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str]:
        return toks[pos] if pos < len(toks) else ("end", "")

    def take() -> tuple[str, str]:
        nonlocal pos
        tok = peek()
        pos += 1
        return tok

    def p_or() -> Node:
        node = p_and()
        while peek() == ("kw", "or"):
            take()
            node = ("or", node, p_and())
        return node

    def p_and() -> Node:
        node = p_not()
        while peek() == ("kw", "and"):
            take()
            node = ("and", node, p_not())
        return node

    def p_not() -> Node:
        if peek() == ("kw", "not"):
            take()
            return ("not", p_not())
        return p_compare()

    def p_compare() -> Node:
        left = p_value()
        kind, value = peek()
        if kind == "op" and value in _COMPARE:
            take()
            return (value, left, p_value())
        return left

    def p_value() -> Node:
        kind, value = take()
        if kind == "num":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "str":
            return bytes(value[1:-1], "utf-8").decode("unicode_escape")
        if kind == "kw" and value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        if kind == "ref":
            return check_ref(tuple(value.split(".")), text)
        if (kind, value) == ("op", "("):
            node = p_or()
            if take() != ("op", ")"):
                raise ExprError(f"missing ')' in {text!r}")
            return node
        raise ExprError(f"unexpected {value or 'end of condition'!r} in {text!r}")

    if not toks:
        raise ExprError("empty condition")
    tree = p_or()
    if pos != len(toks):
        raise ExprError(f"unexpected {toks[pos][1]!r} in {text!r}")
    return tree


def refs(tree: Node) -> list[Ref]:
    """Every reference in ``tree``."""
    if isinstance(tree, Ref):
        return [tree]
    if isinstance(tree, tuple):
        return [r for part in tree[1:] for r in refs(part)]
    return []


def evaluate(tree: Node, lookup: Callable[[Ref], Any]) -> Any:
    """The value of ``tree``; ``lookup(ref)`` gives a reference's value.

    Raises:
        ExprError: a comparison of values that do not compare (a number with a string, ``null``
            ordered), naming both.
    """
    if isinstance(tree, Ref):
        return lookup(tree)
    if not isinstance(tree, tuple):
        return tree
    op = tree[0]
    if op == "or":
        return bool(evaluate(tree[1], lookup)) or bool(evaluate(tree[2], lookup))
    if op == "and":
        return bool(evaluate(tree[1], lookup)) and bool(evaluate(tree[2], lookup))
    if op == "not":
        return not evaluate(tree[1], lookup)
    a, b = evaluate(tree[1], lookup), evaluate(tree[2], lookup)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if not (numeric or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f"cannot compare {a!r} {op} {b!r} ({tree[1]} {op} {tree[2]})")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
