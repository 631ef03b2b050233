"""Helpers shared by the CLI commands: loading a spec for a target, rendering plans, waiting."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import click

from unijob.errors import SpecError

if TYPE_CHECKING:
    from unijob.contract import Adapter, Plan
    from unijob.loading import LoadedSpec

OUTPUT_FORMATS = click.Choice(["text", "json", "yaml"])


def load(path: str, *, overrides: Optional[dict[str, dict[str, Any]]] = None) -> "LoadedSpec":
    """Load and validate a spec file; ``overrides`` merge into ``targets.<name>`` blocks.

    Raises:
        SpecError: with file:line.
    """
    from unijob.loading import load_spec, validate_targets

    loaded = load_spec(path)
    if overrides:
        targets = {k: dict(v) for k, v in loaded.spec.targets.items()}
        for name, block in overrides.items():
            targets.setdefault(name, {}).update(block)
        loaded.spec.targets = targets
        validate_targets(loaded.spec, locate=loaded.locate)
    return loaded


def resolve_target(loaded: "LoadedSpec", target: str, *, endpoint: bool = False) -> tuple[str, list[str]]:
    """The target name to use, and the reasoning lines when ``target`` is ``auto``."""
    if target != "auto":
        return target, []
    from unijob.cost.auto import choose_target

    choice = choose_target(loaded.spec)  # installed, ready targets that can run it; NotReady (exit 3) if none
    return choice.target, list(choice.reasons)


def make_plan(adapter: "Adapter", loaded: "LoadedSpec", submission_id: str, *, endpoint: bool = False) -> "Plan":
    """``adapter.plan`` (or ``plan_endpoint``) with SpecErrors pointed at the file and line."""
    try:
        if endpoint:
            return adapter.plan_endpoint(loaded.spec)
        if not (loaded.spec.script or loaded.spec.image):
            raise SpecError.at((), "this spec has no job (no script or image), only an endpoint: "
                                   "`unijob deploy` serves it, `unijob plan --endpoint` shows the requests")
        return adapter.plan(loaded.spec, submission_id)
    except SpecError as e:
        raise e.locate(loaded.locate) from None
    except Exception as e:
        from unijob.cost.catalog import NoOffering

        if isinstance(e, NoOffering):
            raise SpecError.at(("resources", "accelerator"), str(e)).locate(loaded.locate) from None
        raise


def default_submission_id(loaded: "LoadedSpec") -> str:
    """The key ``unijob plan`` uses when none is given: derived from the spec hash, so a plan is
    reproducible; ``submit`` uses a fresh key per submission instead."""
    return "plan-" + loaded.spec.spec_hash()[:12]


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
        f"resources:  {res.instance_count} x {res.instance_type or '(this machine)'}"
        + (f" ({res.accelerators_per_node} x {res.accelerator} each)" if res.accelerator else "")
        + (f", {res.spot}" if res.spot != "on_demand" else "")
        + (f", region {res.region}" if res.region else ""),
    ]
    for u in plan.uploads:
        lines.append(f"upload:     {u.source} -> {u.destination}")
    for n in plan.notes:
        lines.append(f"note:       {n}")
    for r in plan.requests:
        lines.append("")
        lines.append(f"{r.api}" + (f"   [sent {r.when}]" if r.when != "submit" else "") + (f"   # {r.note}" if r.note else ""))
        lines.append(json.dumps(r.body, indent=2))
    return "\n".join(lines)


def warn(lines: list[str]) -> None:
    for w in lines:
        click.echo(("warning: " if not sys.stderr.isatty() else click.style("warning: ", fg="yellow")) + w, err=True)


def poll(fetch: Callable[[], Any], is_final: Callable[[Any], bool], describe: Callable[[Any], str],
         *, interval: float = 2.0, timeout: Optional[float] = None) -> Any:
    """Poll ``fetch`` until ``is_final``; shows a live status line (rich) on a terminal.

    Returns: the final value. Raises: TimeoutError after ``timeout`` seconds.
    """
    start = time.monotonic()
    value = fetch()
    if is_final(value):
        return value
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(describe(value)) as status:
            while not is_final(value):
                time.sleep(interval)
                value = fetch()
                status.update(f"{describe(value)}  ({time.monotonic() - start:.0f} s)")
                if timeout and time.monotonic() - start > timeout:
                    raise TimeoutError(describe(value))
        return value
    last = ""
    while not is_final(value):
        text = describe(value)
        if text != last:
            click.echo(text, err=True)
            last = text
        time.sleep(interval)
        value = fetch()
        if timeout and time.monotonic() - start > timeout:
            raise TimeoutError(describe(value))
    return value
