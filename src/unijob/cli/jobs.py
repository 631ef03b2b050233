"""Job commands: validate, plan, submit, status, logs, cancel, list, targets, schema."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

import click

from unijob.cli.common import OUTPUT_FORMATS, default_submission_id, load, make_plan, poll, render_plan, resolve_target, warn
from unijob.errors import TargetError, UnijobError

TARGET_HELP = "Target name (local, sagemaker, vertex, databricks, kubernetes, or auto: the cheapest ready one)."


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def validate(specs: tuple[str, ...], quiet: bool) -> None:
    """Check SPECS; exit 2 with file:line:column, field, expectation and close match on errors.

    Validates the spec and each targets.<name> block with that adapter's options model. Imports no
    cloud SDK; submits and records nothing.
    """
    from unijob.errors import SpecError

    failed: list[SpecError] = []
    for path in specs:
        try:
            loaded = load(path)
        except SpecError as e:
            failed.append(e)
            continue
        if not quiet:
            s = loaded.spec
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
@click.option("--idempotency-key", default=None, help="Plan for this submission key (default: derived from the spec hash).")
def plan(spec: str, target: str, fmt: str, endpoint: bool, idempotency_key: Optional[str]) -> None:
    """Print the exact native request(s) SPEC becomes on TARGET; sends nothing.

    With --target local (the default) no cloud SDK is imported.
    """
    from unijob import registry

    loaded = load(spec)
    target, reasons = resolve_target(loaded, target)
    for r in reasons:
        click.echo(r, err=True)
    adapter = registry.get(target)
    p = make_plan(adapter, loaded, idempotency_key or default_submission_id(loaded), endpoint=endpoint)
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
    from unijob import registry
    from unijob.errors import NotReady, UsageError
    from unijob.records import Records

    overrides = {}
    if simulate_preemption is not None:
        if target not in ("local",):
            raise UsageError("--simulate-preemption works with the local target only")
        overrides["local"] = {"simulate_preemption": simulate_preemption}
    loaded = load(spec, overrides=overrides)
    target, reasons = resolve_target(loaded, target)
    for r in reasons:
        click.echo(r, err=True)
    adapter = registry.get(target)
    # Validate first (pure): a bad spec leaves no record and sends nothing.
    probe = make_plan(adapter, loaded, idempotency_key or "validate")
    readiness = adapter.check(loaded.spec)
    if not readiness.ready:
        raise NotReady(f"target '{target}' is not ready:\n  " + "\n  ".join(readiness.problems))
    if dry_run:
        probe.extra["dry_run"] = True
        adapter.submit(probe)
        click.echo(f"dry run: {target} accepted {probe.name}; nothing was created")
        return
    with Records() as records:
        rec, resumed = records.begin_submission(
            name=loaded.spec.name, target=target, spec_hash=loaded.spec.spec_hash(),
            spec_path=str(loaded.path.resolve()), submission_id=idempotency_key)
        if resumed and rec.state != "SUBMITTING":
            click.echo(f"already submitted as {rec.id} ({rec.native_id}); state {rec.state}", err=True)
            job_id = rec.id
        else:
            if resumed:
                click.echo(f"resuming unfinished submission {rec.id}", err=True)
            p = make_plan(adapter, loaded, rec.submission_id)
            warn(p.warnings)
            try:
                handle = adapter.submit(p)
            except TargetError as e:
                records.update(rec.id, state="FAILED", message=f"submit failed: {e.message}")
                raise
            except UnijobError:
                records.delete(rec.id)  # nothing was sent
                raise
            records.set_submitted(rec.id, handle.native_id, handle.to_dict())
            job_id = rec.id
            click.echo(f"submitted {job_id} to {target} as {handle.native_id}")
    if follow or wait:
        final = _wait(job_id, follow=follow)
        sys.exit(0 if final == "SUCCEEDED" else 1)


def _refresh(job_id: str) -> Any:
    """Ask the target for the job's state and store it; returns (record, status)."""
    from unijob import registry
    from unijob.contract import JobHandle, JobState
    from unijob.records import Records

    with Records() as records:
        rec = records.get(job_id)
        if not rec.handle:
            return rec, None
        adapter = registry.get(rec.target)
        handle = JobHandle.from_dict(rec.handle)
        st = adapter.status(handle)
        new_handle = None
        if st.handle_update:
            handle.extra.update(st.handle_update)
            new_handle = handle.to_dict()
        rec = records.update(rec.id, state=st.state.value, message=st.message, restarts=st.restarts,
                             handle=new_handle, started_at=st.started_at,
                             ended_at=st.ended_at if st.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED) else None)
        return rec, st


def _wait(job_id: str, *, follow: bool) -> str:
    from unijob import registry
    from unijob.contract import JobHandle
    from unijob.records import Records

    if follow:
        with Records() as records:
            rec = records.get(job_id)
        adapter = registry.get(rec.target)
        for line in adapter.logs(JobHandle.from_dict(rec.handle), follow=True):
            click.echo(line)
    rec, st = poll(lambda: _refresh(job_id),
                   lambda v: v[0].state in ("SUCCEEDED", "FAILED", "CANCELLED"),
                   lambda v: f"{v[0].id}: {v[0].state}" + (f" (restarts {v[0].restarts})" if v[0].restarts else "")
                   + (f" - {v[0].message}" if v[0].message else ""), interval=1.0)
    _print_final(rec)
    return rec.state


def _print_final(rec: Any) -> None:
    click.echo(f"{rec.id} {rec.state}" + (f" after {rec.restarts} restart(s)" if rec.restarts else ""))
    if rec.message and rec.state != "SUCCEEDED":
        click.echo(rec.message, err=True)


@click.command()
@click.argument("job")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(job: str, fmt: str) -> None:
    """Show JOB's state (JOB: the unijob id, a prefix of it, or the native id)."""
    rec, st = _refresh(job)
    if fmt == "json":
        d = rec.to_dict()
        d["native_state"] = st.native_state if st else None
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"job:      {rec.id}  ({rec.name})")
    click.echo(f"target:   {rec.target}  native id {rec.native_id}")
    click.echo(f"state:    {rec.state}" + (f"  [{st.native_state}]" if st and st.native_state else ""))
    click.echo(f"restarts: {rec.restarts}")
    if rec.message:
        click.echo(f"message:  {rec.message}")
    for at, state, message in rec.history:
        click.echo(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))}  {state}" + (f"  {message.splitlines()[0]}" if message else ""))


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job: str, follow: bool) -> None:
    """Print JOB's logs, every rank or host prefixed."""
    from unijob import registry
    from unijob.contract import JobHandle
    from unijob.records import Records

    with Records() as records:
        rec = records.get(job)
    if not rec.handle:
        raise TargetError(f"job {rec.id} was never sent (state {rec.state})")
    for line in registry.get(rec.target).logs(JobHandle.from_dict(rec.handle), follow=follow):
        click.echo(line)


@click.command()
@click.argument("job")
def cancel(job: str) -> None:
    """Cancel JOB (the whole gang). Cancelling a finished job does nothing."""
    from unijob import registry
    from unijob.contract import JobHandle
    from unijob.records import Records

    with Records() as records:
        rec = records.get(job)
        if rec.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            click.echo(f"{rec.id} already {rec.state}")
            return
        if not rec.handle:
            records.update(rec.id, state="CANCELLED", message="cancelled before it was sent")
            click.echo(f"{rec.id} CANCELLED (never sent)")
            return
        registry.get(rec.target).cancel(JobHandle.from_dict(rec.handle))
    rec, _ = _refresh(rec.id)
    click.echo(f"{rec.id} {rec.state}")


@click.command("list")
@click.option("-t", "--target", default=None, help="Only jobs on this target.")
@click.option("-n", "--limit", default=50, show_default=True)
@click.option("--refresh", is_flag=True, help="Ask the targets for the state of unfinished jobs first.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_jobs(target: Optional[str], limit: int, refresh: bool, fmt: str) -> None:
    """List submitted jobs, newest first."""
    from unijob.records import Records

    with Records() as records:
        recs = records.list(limit=limit, target=target)
    if refresh:
        out = []
        for r in recs:
            if r.state not in ("SUCCEEDED", "FAILED", "CANCELLED") and r.handle:
                try:
                    r = _refresh(r.id)[0]
                except UnijobError as e:
                    warn([f"{r.id}: {e.message}"])
            out.append(r)
        recs = out
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in recs], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "TARGET", "STATE", "RESTARTS", "SUBMITTED", "NATIVE ID"):
        table.add_column(col)
    for r in recs:
        table.add_row(r.id, r.name, r.target, r.state, str(r.restarts),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)), r.native_id or "-")
    Console().print(table)


@click.command()
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--no-check", is_flag=True, help="List without asking each adapter whether it is ready.")
def targets(fmt: str, no_check: bool) -> None:
    """List installed targets, whether each is ready, and how to install the others."""
    from unijob import registry

    rows = []
    for name, where in registry.describe().items():
        row: dict[str, Any] = {"name": name, "installed": True, "adapter": where, "ready": None, "problems": []}
        if not no_check:
            try:
                r = registry.get(name).check()
                row.update(ready=r.ready, problems=r.problems, details=r.details)
            except UnijobError as e:
                row.update(ready=False, problems=[e.message])
        rows.append(row)
    for name, hint in registry.KNOWN_TARGETS.items():
        if name not in registry.describe():
            rows.append({"name": name, "installed": False, "ready": False, "problems": [f"pip install {hint}"]})
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
def schema() -> None:
    """Print the JobSpec JSON Schema (the file specs/jobspec.schema.json is generated from it)."""
    from unijob.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
