"""Job commands: validate, plan, submit, status, logs, cancel, list, targets, schema."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import click

from unijob.cli.common import OUTPUT_FORMATS, notes, render_plan, wait_job, warn

TARGET_HELP = "Target name (local, sagemaker, vertex, databricks, kubernetes, slurm, or auto: the cheapest ready one)."


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def validate(specs: tuple[str, ...], quiet: bool) -> None:
    """Check SPECS; exit 2 with file:line:column, field, expectation and close match on errors.

    Validates the spec and each targets.<name> block with that adapter's options model. Imports no
    cloud SDK; submits and records nothing.
    """
    from unijob.api.specs import load
    from unijob.errors import SpecError

    failed: list[SpecError] = []
    for path in specs:
        try:
            s = load(path)
        except SpecError as e:
            failed.append(e)
            continue
        if not quiet:
            res = s.resources
            if not (s.script or s.image):
                variants = s.endpoint.resolved_variants()
                click.echo(f"ok: {path}: {s.name}, endpoint only ({len(variants)} variant(s): "
                           + ", ".join(f"{v.name} {v.weight}%" for v in variants) + ")")
                continue
            click.echo(f"ok: {path}: {s.name}, {res.nodes} node(s) x {res.processes_per_node} process(es)"
                       + (f", {res.accelerator} per node" if res.accelerator else ", CPU")
                       + (f", {s.spot.policy}" if s.spot.is_spot else "")
                       + (", endpoint" if s.endpoint else ""))
    if failed:
        if len(failed) == 1:
            raise failed[0]
        issues = [i for e in failed for i in e.issues]
        raise SpecError(issues)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="local", show_default=True, help=TARGET_HELP)
@click.option("-o", "--output", "fmt", type=OUTPUT_FORMATS, default="text", show_default=True,
              help="text: summary and requests; json: the whole plan; yaml: request bodies as a YAML stream.")
@click.option("--endpoint", is_flag=True, help="Plan the spec's endpoint deployment instead of the training job.")
@click.option("--batch", is_flag=True, help="Plan the spec's batch prediction instead of the training job.")
@click.option("--idempotency-key", default=None, help="Plan for this submission key (default: derived from the spec hash).")
def plan(spec: str, target: str, fmt: str, endpoint: bool, batch: bool, idempotency_key: Optional[str]) -> None:
    """Print the exact native request(s) SPEC becomes on TARGET; sends nothing.

    With --target local (the default) no cloud SDK is imported.
    """
    from unijob.api import specs as api
    from unijob.loading import is_pipeline_file

    if is_pipeline_file(spec):  # a pipeline: the DAG (local) or the platform's pipeline request
        click.echo(render_plan(api.plan(spec, target), fmt))
        return
    loaded = api.load(spec)
    target, reasons = api.resolve_target(loaded, target)
    notes(reasons)
    if endpoint and batch:
        from unijob.errors import UsageError

        raise UsageError("give --endpoint or --batch, not both")
    p = api.plan(loaded, target, endpoint=endpoint, batch=batch, idempotency_key=idempotency_key)
    warn(p.warnings)
    click.echo(render_plan(p, fmt))


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="local", show_default=True, help=TARGET_HELP)
@click.option("--wait", is_flag=True, help="Wait until the job ends; exit 1 if it failed or was cancelled.")
@click.option("-f", "--follow", is_flag=True, help="Stream the logs until the job ends (implies --wait).")
@click.option("--idempotency-key", default=None,
              help="Key of this submission; submitting again with the same key never starts a second job.")
@click.option("--simulate-preemption", default=None, metavar="AFTER",
              help="local target: preempt the gang AFTER (e.g. 20s) each (re)start, as a spot reclaim would.")
@click.option("--dry-run", is_flag=True, help="Ask the platform to validate without creating (where it can).")
def submit(spec: str, target: str, wait: bool, follow: bool, idempotency_key: Optional[str],
           simulate_preemption: Optional[str], dry_run: bool) -> None:
    """Submit SPEC to TARGET.

    The record is written before anything is sent; if this command dies or loses the answer,
    running it again resumes the same submission instead of starting a second job.
    """
    from unijob.api import jobs as api
    from unijob.api.specs import load
    from unijob.errors import UsageError

    overrides = {}
    if simulate_preemption is not None:
        if target not in ("local",):
            raise UsageError("--simulate-preemption works with the local target only")
        overrides["local"] = {"simulate_preemption": simulate_preemption}
    loaded = load(spec, overrides=overrides)
    if dry_run:
        p = api.submit(loaded, target, idempotency_key=idempotency_key, dry_run=True)
        click.echo(f"dry run: {p.target} accepted {p.name}; nothing was created")
        return
    _submitted(api.submit(loaded, target, idempotency_key=idempotency_key), "", follow=follow, wait=wait)


def _submitted(job, what: str, *, follow: bool, wait: bool) -> None:
    """Print a submission's notes and id; with ``follow``/``wait``, stream its logs and exit 0 only
    if it SUCCEEDED."""
    notes(job.notes)
    warn(job.warnings)
    if not job.already_submitted:
        click.echo(f"submitted {what}{job.id} to {job.target} as {job.native_id}")
    if follow or wait:
        if follow:
            for line in job.logs(follow=True):
                click.echo(line)
        sys.exit(0 if wait_job(job) == "SUCCEEDED" else 1)


@click.command("batch")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="local", show_default=True, help=TARGET_HELP)
@click.option("--wait", is_flag=True, help="Wait until the batch ends; exit 1 if it failed or was cancelled.")
@click.option("-f", "--follow", is_flag=True, help="Stream the logs until the batch ends (implies --wait).")
@click.option("--idempotency-key", default=None, help="Key of this submission (a retry never starts a second batch).")
@click.option("--dry-run", is_flag=True, help="Validate without creating (where the platform can).")
def batch(spec: str, target: str, wait: bool, follow: bool, idempotency_key: Optional[str], dry_run: bool) -> None:
    """Run SPEC's batch prediction (its batch: section) on TARGET.

    The handler's predict() is mapped over JSON Lines input; one output line per input line, in
    order; bad lines go to errors.jsonl. status, logs, cancel and list work on it as on a job.
    """
    from unijob.api import jobs as api
    from unijob.api.specs import load

    loaded = load(spec)
    if dry_run:
        p = api.batch_predict(loaded, target, idempotency_key=idempotency_key, dry_run=True)
        click.echo(f"dry run: {p.target} accepted {p.name}; nothing was created")
        return
    _submitted(api.batch_predict(loaded, target, idempotency_key=idempotency_key), "batch ", follow=follow, wait=wait)


@click.command()
@click.argument("job")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(job: str, fmt: str) -> None:
    """Show JOB's state (JOB: the unijob id, a prefix of it, or the native id)."""
    from unijob.api import jobs as api

    j = api.job(job)
    j.status()
    if fmt == "json":
        click.echo(json.dumps(j.to_dict(), indent=2))
        return
    click.echo(f"job:      {j.id}  ({j.name})")
    click.echo(f"target:   {j.target}  native id {j.native_id}")
    click.echo(f"state:    {j.state.value}" + (f"  [{j.native_state}]" if j.native_state else ""))
    click.echo(f"restarts: {j.restarts}")
    if j.message:
        click.echo(f"message:  {j.message}")
    for at, state, message in j.history:
        click.echo(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))}  {state}" + (f"  {message.splitlines()[0]}" if message else ""))


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job: str, follow: bool) -> None:
    """Print JOB's logs, every rank or host prefixed."""
    from unijob.api import jobs as api

    for line in api.job(job).logs(follow=follow):
        click.echo(line)


@click.command()
@click.argument("job")
def cancel(job: str) -> None:
    """Cancel JOB (the whole gang). Cancelling a finished job does nothing."""
    from unijob.api import jobs as api

    j = api.job(job)
    if j.state.is_final:
        click.echo(f"{j.id} already {j.state.value}")
        return
    sent = j.native_id is not None
    j.cancel()
    click.echo(f"{j.id} {j.state.value}" + ("" if sent else " (never sent)"))


@click.command("list")
@click.option("-t", "--target", default=None, help="Only jobs on this target.")
@click.option("-n", "--limit", default=50, show_default=True)
@click.option("--refresh", is_flag=True, help="Ask the targets for the state of unfinished jobs first.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_jobs(target: Optional[str], limit: int, refresh: bool, fmt: str) -> None:
    """List submitted jobs, newest first."""
    from unijob.api import jobs as api

    found = api.jobs(target, limit, refresh=refresh)
    for j in found:
        warn(j.warnings)
    if fmt == "json":
        click.echo(json.dumps([j.to_dict() for j in found], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "TARGET", "STATE", "RESTARTS", "SUBMITTED", "NATIVE ID"):
        table.add_column(col)
    for j in found:
        table.add_row(j.id, j.name, j.target, j.state.value, str(j.restarts),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at)), j.native_id or "-")
    Console().print(table)


@click.command()
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--no-check", is_flag=True, help="List without asking each adapter whether it is ready.")
def targets(fmt: str, no_check: bool) -> None:
    """List installed targets, whether each is ready, and how to install the others."""
    from unijob.api import specs as api

    rows = [t.to_dict() for t in api.targets(check=not no_check)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "ready" if row["ready"] else ("installed" if row["installed"] and row["ready"] is None else
                                             ("not ready" if row["installed"] else "not installed"))
        click.echo(f"{row['name']:<12} {mark}")
        for p in row["problems"]:
            click.echo(f"{'':<12}   - {p}")


@click.command()
@click.option("--pipeline", is_flag=True, help="The pipeline spec's schema (specs/pipeline.schema.json) instead.")
def schema(pipeline: bool) -> None:
    """Print the JobSpec JSON Schema (the file specs/jobspec.schema.json is generated from it)."""
    if pipeline:
        from unijob.pipeline.spec import json_schema as pipeline_schema

        click.echo(json.dumps(pipeline_schema(), indent=2))
        return
    from unijob.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
