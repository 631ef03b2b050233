"""``unijob pipelines ...``: pipeline runs, printed. The logic is :mod:`unijob.pipeline.runs`."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

import click

FMT = click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


def _print_run(r: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    click.echo(f"run:    {r.id}  ({r.name})")
    click.echo(f"state:  {r.state}")
    for name, s in r.steps.items():
        extra = []
        if s.get("job_id"):
            extra.append(f"job {s['job_id']}")
        if s.get("attempts", 0) > 1:
            extra.append(f"{s['attempts']} attempts")
        if s.get("metrics"):
            extra.append(", ".join(f"{k}={v}" for k, v in sorted(s["metrics"].items())))
        if s.get("outputs", {}).get("uri"):
            extra.append(s["outputs"]["uri"])
        if s.get("message"):
            extra.append(s["message"].splitlines()[0])
        click.echo(f"  {name:<20} {s['state']:<16} " + "; ".join(extra))


def _print_managed(r: Any, fmt: str) -> None:
    for w in r.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "json":
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    click.echo(f"execution: {r.id}  ({r.name} on {r.target})")
    click.echo(f"state:     {r.state} ({r.native_status})" + (f": {r.message}" if r.message else ""))
    for name, s in r.steps.items():
        extra = [x for x in (s.get("job_id"), s.get("outcome") and f"condition {s['outcome']}",
                             s.get("attempts", 0) > 1 and f"{s['attempts']} attempts",
                             (s.get("message") or "").splitlines()[0] if s.get("message") else "") if x]
        click.echo(f"  {name:<28} {s['state']:<10} " + "; ".join(extra))


def _managed_line(r: Any) -> None:
    click.echo(f"{r.state}: " + " ".join(f"{n}:{s['state']}" for n, s in r.steps.items()), err=True)


@click.group("pipelines")
def pipelines() -> None:
    """Pipeline runs: run, status, list, cancel, resume (steps run as local jobs, in DAG order)."""


@pipelines.command("run")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default=None, help="Where the steps run (default: the pipeline's target, local).")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a parameter (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 1 unless it SUCCEEDED.")
@click.option("--managed", is_flag=True, help="Compile the pipeline for the target and start it on the target's own "
                                              "pipeline service (SageMaker Pipelines) instead of the DAG runner here.")
@click.option("--interval", type=float, default=30.0, show_default=True,
              help="With --managed --wait: seconds between status calls to the platform.")
@FMT
def run(pipeline: str, target: Optional[str], params: tuple[str, ...], wait: bool, managed: bool, interval: float,
        fmt: str) -> None:
    """Run PIPELINE: start its DAG runner here and print the run id (with --managed: start it on
    the target's pipeline service and print the execution ARN; with --wait too, follow it)."""
    from unijob.errors import UsageError
    from unijob.pipeline import runs

    values = {}
    for item in params:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--param takes NAME=VALUE, got {item!r}")
        values[k] = v
    if managed:
        from unijob.pipeline import managed as mp

        if not target:
            raise UsageError("--managed needs -t TARGET (e.g. -t sagemaker)")
        out = mp.start(pipeline, target, values)
        if not wait:
            click.echo(json.dumps(out, indent=2) if fmt == "json" else
                       "\n".join(f"{k + ':':<11} {v}" for k, v in out.items()))
            return
        click.echo(f"started pipeline execution {out['execution']}", err=True)
        r = mp.execution(out["execution"], target)
        r.wait(interval=interval, on_change=_managed_line)
        _print_managed(r, fmt)
        sys.exit(0 if r.state == "SUCCEEDED" else 1)
    r = runs.run(pipeline, target=target, params=values)
    click.echo(f"started pipeline run {r.id}", err=fmt == "json")
    if wait:
        last = ""
        while True:
            r.status()
            line = " ".join(f"{n}:{s['state']}" for n, s in r.steps.items())
            if line != last:
                click.echo(line, err=True)
                last = line
            if r.state in runs.RUN_FINAL or r.state == "STOPPED":
                break
            time.sleep(0.5)
        _print_run(r, fmt)
        sys.exit(0 if r.state == "SUCCEEDED" else 1)


@pipelines.command("status")
@click.argument("run_id")
@FMT
def status(run_id: str, fmt: str) -> None:
    """Show a run and each step's state, job, metrics and message. RUN_ID is a run started here
    or a managed execution (a SageMaker pipeline execution ARN)."""
    from unijob.pipeline import runs

    if run_id.startswith("arn:"):
        from unijob.pipeline import managed

        _print_managed(managed.execution(run_id), fmt)
        return
    _print_run(runs.run_of(run_id), fmt)


@pipelines.command("list")
@click.option("-n", "--limit", default=50, show_default=True)
@FMT
def list_(limit: int, fmt: str) -> None:
    """List pipeline runs started here, newest first."""
    from unijob.pipeline import runs

    rs = runs.runs(limit=limit)
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in rs], indent=2))
        return
    for r in rs:
        done = sum(s["state"] == "SUCCEEDED" for s in r.steps.values())
        click.echo(f"{r.id:<48} {r.state:<10} {done}/{len(r.steps)} steps succeeded")


@pipelines.command("cancel")
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a run: its runner cancels the running step jobs."""
    from unijob.pipeline import runs

    r = runs.run_of(run_id)
    r.cancel()
    click.echo(f"{r.id} {r.state}")


@pipelines.command("resume")
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end.")
def resume(run_id: str, wait: bool) -> None:
    """Resume a stopped or failed run: only the unfinished steps run."""
    from unijob.pipeline import runs

    r = runs.run_of(run_id).resume()
    click.echo(f"resumed pipeline run {r.id}")
    if wait:
        r.wait()
        _print_run(r, "text")
        sys.exit(0 if r.state == "SUCCEEDED" else 1)
