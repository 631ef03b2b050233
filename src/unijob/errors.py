"""The errors unijob raises, each with the process exit code the CLI uses for it.

Exit codes (documented in the README's CLI reference):

====  ==========================================================================
0     success
1     the job ran and ended FAILED or CANCELLED (``submit --wait``), or a bug
2     bad input: a malformed spec, an option the target rejects, a usage error
3     the target is not ready: its adapter is not installed or lacks credentials
4     the target answered with an error (API error, quota, capacity)
5     no such job or endpoint in the local records
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


class UnijobError(Exception):
    """Base class of every error a user can act on. ``str(err)`` is the whole message."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


@dataclass
class SpecIssue:
    """One problem with a spec.

    Attributes:
        loc: the field path inside the spec, e.g. ``("resources", "accelerator")``.
        message: what is wrong and what was expected; never contains a secret value.
        suggestion: the closest valid key or value, if any ("did you mean ...").
        file, line, column: where in the YAML file, filled in by :mod:`unijob.loading`
            (1-based; ``None`` when the spec did not come from a file).
    """

    loc: tuple[str | int, ...]
    message: str
    suggestion: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def path(self) -> str:
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(top level)"

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        text = f"{where}{self.path}: {self.message}"
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return text


class SpecError(UnijobError):
    """The spec (or a target's options for it) is invalid. Exit code 2; nothing was sent.

    Adapters raise it from ``plan()`` for target-specific problems, naming the field path so
    that the CLI can point at the file and line::

        raise SpecError.at(("targets", "sagemaker", "role_arn"), "required: the IAM role ARN ...")
    """

    exit_code = 2

    def __init__(self, issues: Sequence[SpecIssue], *, hint: str | None = None) -> None:
        self.issues = list(issues)
        super().__init__(self._render(), hint=hint)

    def _render(self) -> str:
        n = len(self.issues)
        head = "invalid spec" if n == 1 else f"invalid spec ({n} problems)"
        return head + ":\n" + "\n".join("  " + i.format() for i in self.issues)

    @classmethod
    def at(cls, loc: Sequence[str | int], message: str, suggestion: str | None = None) -> "SpecError":
        return cls([SpecIssue(tuple(loc), message, suggestion)])

    def locate(self, locator) -> "SpecError":
        """Fill in file/line/column with ``locator(loc) -> (file, line, column)``; returns self."""
        for issue in self.issues:
            if issue.file is None:
                issue.file, issue.line, issue.column = locator(issue.loc)
        self.issues.sort(key=lambda i: (i.file or "", i.line or 0, i.column or 0))
        self.message = self._render()
        self.args = (self.message,)
        return self


class UsageError(UnijobError):
    """A bad command line or a bad parameter outside a spec. Exit code 2."""

    exit_code = 2


class NotReady(UnijobError):
    """The target cannot be used here: its adapter or SDK is missing, or credentials are. Exit 3."""

    exit_code = 3


class TargetError(UnijobError):
    """The platform answered with an error (API error, quota, capacity). Exit 4."""

    exit_code = 4


class NotFound(UnijobError):
    """No job or endpoint with that id in the local records (or on the platform). Exit 5."""

    exit_code = 5


@dataclass
class Readiness:
    """What ``Adapter.check()`` returns: whether the target can be used, and why not.

    Attributes:
        ready: True when submit would be attempted.
        problems: one line each, e.g. ``"boto3 is not installed: pip install unijob-sagemaker"``.
        details: facts worth showing (region, project, profile), never secrets.
    """

    ready: bool
    problems: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
