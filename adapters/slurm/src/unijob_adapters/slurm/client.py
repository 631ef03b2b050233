"""Slurm's own commands, run on this machine or on a login node over SSH, and their output parsed.

Every call is one shell command line: ``sh -c CMD`` here, or ``ssh [options] LOGIN CMD`` with the
system ``ssh`` client and key authentication (``BatchMode=yes``: a missing key fails instead of
prompting), as SkyPilot's and dstack's Slurm backends do. ``ssh`` exits 255 when it cannot connect
(ssh(1), "EXIT STATUS"); that is a readiness problem (:class:`~unijob.errors.NotReady`, exit 3).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from unijob.errors import NotReady, TargetError

SSH_UNREACHABLE = 255


def shpath(path: str) -> str:
    """``path`` quoted for the shell, with a leading ``~`` left to the cluster's shell (``$HOME``)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


@dataclass
class Runner:
    """Where Slurm's commands run.

    Attributes:
        login: ``user@host`` of the login node, or ``None`` for this machine.
        port / identity / options: ``ssh -p``, ``ssh -i``, extra ``-o`` options.
        env: extra environment for local commands (e.g. secrets sbatch exports, ``SLURM_CONF``).
        timeout: seconds a command may take.
    """

    login: Optional[str] = None
    port: Optional[int] = None
    identity: Optional[str] = None
    options: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 120.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], **kw: Any) -> "Runner":
        return cls(login=extra.get("login"), port=extra.get("ssh_port"), identity=extra.get("ssh_identity"),
                   options=tuple(extra.get("ssh_options") or ()), **kw)

    @property
    def where(self) -> str:
        return self.login or "this machine"

    def argv(self, command: str) -> list[str]:
        if not self.login:
            return ["sh", "-c", command]
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", os.path.expanduser(self.identity)]
        for o in self.options:
            argv += ["-o", o]
        return argv + [self.login, command]

    def run(self, command: str, *, input: Optional[bytes] = None, env: Optional[Mapping[str, str]] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        """Run ``command`` (a shell command line); returns the completed process (bytes).

        Raises:
            NotReady: ``ssh`` (or ``sh``) is missing, or ssh could not reach the login node.
            TargetError: the command timed out.
        """
        full_env = None
        if not self.login:
            full_env = {k: v for k, v in os.environ.items() if not _private(k)}
            full_env.update({**self.env, **(env or {})})
        try:
            p = subprocess.run(self.argv(command), input=input if input is not None else b"", capture_output=True,
                               env=full_env, timeout=timeout or self.timeout)
        except FileNotFoundError as e:
            raise NotReady(f"cannot run Slurm's commands: {e.filename} is not installed") from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{shlex.split(command)[0] if command else 'command'} on {self.where} did not answer "
                              f"within {timeout or self.timeout:.0f} s") from None
        if self.login and p.returncode == SSH_UNREACHABLE:
            msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NotReady(f"cannot reach the Slurm login node {self.login} over ssh: "
                           f"{msg[-1] if msg else 'ssh exited 255'}",
                           hint="check targets.slurm.login, ssh_port, ssh_identity, and that key authentication works")
        return p

    def text(self, command: str, **kw: Any) -> tuple[int, str, str]:
        p = self.run(command, **kw)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _private(name: str) -> bool:
    """Variables of this unijob process that must not reach a job through sbatch's default
    ``--export=ALL`` (sbatch(1)): its Python environment and unijob's own settings."""
    return name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") or name.startswith("UNIJOB_")


# ---- parsing Slurm's output ---------------------------------------------------------------------

def parse_scontrol_oneliner(line: str) -> dict[str, str]:
    """``scontrol show job -o`` output: ``Key=Value`` pairs separated by spaces. Values never hold
    ``=`` followed by a key, except free text fields at the end (Command, WorkDir, Comment...),
    so keys are found as the words before ``=`` that start with an upper-case letter."""
    out: dict[str, str] = {}
    key = None
    for word in line.strip().split(" "):
        k, eq, v = word.partition("=")
        if eq and k and k[0].isupper() and k.replace("/", "").replace(":", "").isalnum():
            key = k
            out[key] = v
        elif key is not None:
            out[key] += " " + word
    return out


def parse_sacct(text: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """``sacct -n -P -o <fields>`` output (``|``-separated, no header) as dicts."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        rows.append({f: (parts[i].strip() if i < len(parts) else "") for i, f in enumerate(fields)})
    return rows


def first_state(state: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``COMPLETED+`` -> ``COMPLETED``."""
    return (state or "").split(" ")[0].rstrip("+").upper()
