"""Printing shared by the CLI commands: plans, warnings, notes, a job's progress while waiting.

The commands parse arguments and print; what they do is :mod:`unijob.api`'s.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from unijob.api.jobs import Job
    from unijob.contract import Plan

OUTPUT_FORMATS = click.Choice(["text", "json", "yaml"])


def render_plan(plan: "Plan", fmt: str) -> str:
    """Text: a summary plus every request as JSON. json: the whole plan. yaml: the request bodies as
    a YAML stream, one document per request (for Kubernetes, files ``kubectl apply -f`` takes)."""
    if fmt == "json":
        return json.dumps(plan.model_dump(mode="json"), indent=2)
    if fmt == "yaml":
        import yaml

        docs = []
        for r in plan.requests:
            head = f"# {r.api}" + (f" (sent {r.when})" if r.when != "submit" else "")
            docs.append(head + "\n" + yaml.safe_dump(r.body, sort_keys=False, default_flow_style=False).rstrip())
        return "\n---\n".join(docs)
    res = plan.resources
    lines = [
        f"target:     {plan.target}",
        f"name:       {plan.name}",
        f"resources:  {res.instance_count} x {res.instance_type or ('(this machine)' if plan.target == 'local' else 'node')}"
        + (f" ({res.accelerators_per_node} x {res.accelerator} each)" if res.accelerator else "")
        + (f", {res.spot}" if res.spot != "on_demand" else "")
        + (f", region {res.region}" if res.region else ""),
    ]
    for u in plan.uploads:
        left_out = f" (leaving out what a local run writes there: {', '.join(u.exclude)})" if u.exclude else ""
        lines.append(f"upload:     {u.source} -> {u.destination}{left_out}")
    for n in plan.notes:
        lines.append(f"note:       {n}")
    for r in plan.requests:
        lines.append("")
        lines.append(f"{r.api}" + (f"   [sent {r.when}]" if r.when != "submit" else "") + (f"   # {r.note}" if r.note else ""))
        # Multi-line strings (a batch script) print as they are, after the rest of the body.
        blocks = {k: v for k, v in r.body.items() if isinstance(v, str) and "\n" in v}
        lines.append(json.dumps({k: v for k, v in r.body.items() if k not in blocks}, indent=2))
        for k, v in blocks.items():
            lines += [f"--- {k} ---", v.rstrip("\n")]
    return "\n".join(lines)


def warn(lines: list[str]) -> None:
    for w in lines:
        click.echo(("warning: " if not sys.stderr.isatty() else click.style("warning: ", fg="yellow")) + w, err=True)


def notes(lines: list[str]) -> None:
    """Lines for people (why auto chose a target, a resumed submission) on stderr."""
    for line in lines:
        click.echo(line, err=True)


def wait_job(job: "Job") -> str:
    """``job.wait()`` showing the state as it changes: a live status line (rich) on a terminal,
    one line per change otherwise; then the final line. Returns the final state's value."""
    start = time.monotonic()

    def describe(j: "Job") -> str:
        return (f"{j.id}: {j.state.value}" + (f" (restarts {j.restarts})" if j.restarts else "")
                + (f" - {j.message}" if j.message else ""))

    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(describe(job)) as status:
            job.wait(on_change=lambda j: status.update(f"{describe(j)}  ({time.monotonic() - start:.0f} s)"))
    else:
        job.wait(on_change=lambda j: None if j.state.is_final else click.echo(describe(j), err=True))
    click.echo(f"{job.id} {job.state.value}" + (f" after {job.restarts} restart(s)" if job.restarts else ""))
    if job.message and job.state.value != "SUCCEEDED":
        click.echo(job.message, err=True)
    return job.state.value
