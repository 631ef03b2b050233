"""Endpoint commands: deploy, endpoints, traffic, undeploy."""

from __future__ import annotations

import json
from typing import Optional

import click

from unijob.cli.common import OUTPUT_FORMATS, notes, render_plan, warn
from unijob.errors import UsageError


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="local", show_default=True, help="Target to deploy on.")
@click.option("-o", "--output", "fmt", type=OUTPUT_FORMATS, default=None, help="Print the plan in this format first.")
def deploy(spec: str, target: str, fmt: Optional[str]) -> None:
    """Deploy SPEC's endpoint section on TARGET (replicas, autoscaling, traffic split).

    An endpoint model given as job:<name-or-id> serves the model that job wrote.
    """
    from unijob.api import endpoints as api
    from unijob.api.specs import load, plan, resolve_target

    loaded = load(spec)
    target, reasons = resolve_target(loaded, target)
    notes(reasons)
    p = plan(loaded, target, endpoint=True)
    warn(p.warnings)
    if fmt:
        click.echo(render_plan(p, fmt))
    else:
        notes([f"note: {n}" for n in p.notes])
    ep = api.deploy(p)
    click.echo(f"deployed endpoint {ep.name} on {ep.target}")


@click.command()
@click.option("--refresh", is_flag=True, help="Ask each target for the endpoint's state.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def endpoints(refresh: bool, fmt: str) -> None:
    """List endpoints deployed from here."""
    from unijob.api import endpoints as api

    out = []
    for ep in api.endpoints():
        row = ep.to_dict()
        if refresh:
            st = ep.status()
            row.update(state=st.state, traffic=st.traffic, replicas=st.replicas, url=st.url)
        out.append(row)
    if fmt == "json":
        click.echo(json.dumps(out, indent=2))
        return
    for row in out:
        extra = ""
        if "traffic" in row:
            extra = "  " + ", ".join(f"{k}={v}%" for k, v in row["traffic"].items())
        click.echo(f"{row['name']:<24} {row['target']:<12} {row['state']}{extra}")


def _parse_split(pairs: tuple[str, ...]) -> dict[str, int]:
    split: dict[str, int] = {}
    for p in pairs:
        name, sep, weight = p.partition("=")
        if not sep or not weight.strip().isdigit():
            raise UsageError(f"expected VARIANT=PERCENT such as blue=90, got '{p}'")
        split[name.strip()] = int(weight)
    return split


@click.command()
@click.argument("name")
@click.argument("split", nargs=-1, required=True)
@click.option("-t", "--target", default=None, help="The endpoint's target, when the name is on several.")
def traffic(name: str, split: tuple[str, ...], target: Optional[str]) -> None:
    """Set endpoint NAME's traffic SPLIT, e.g. `unijob traffic ranker blue=90 green=10` (sums to 100)."""
    from unijob.api import endpoints as api

    weights = api.endpoint(name, target).set_traffic(_parse_split(split))
    click.echo(f"{name}: " + ", ".join(f"{k}={v}%" for k, v in weights.items()))


@click.command()
@click.argument("name")
@click.option("-t", "--target", default=None, help="The endpoint's target, when the name is on several.")
def undeploy(name: str, target: Optional[str]) -> None:
    """Delete endpoint NAME and everything deploy created."""
    from unijob.api import endpoints as api

    ep = api.endpoint(name, target)
    ep.undeploy()
    click.echo(f"undeployed {name} from {ep.target}")


def _read_data(data: str) -> object:
    """``--data``: JSON text, ``@file.json`` or ``-`` (standard input)."""
    import sys

    source = "--data"
    if data == "-":
        text, source = sys.stdin.read(), "standard input"
    elif data.startswith("@"):
        try:
            text, source = open(data[1:], encoding="utf-8").read(), data[1:]
        except OSError as e:
            raise UsageError(f"cannot read {data[1:]}: {e.strerror}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{source} is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


@click.command()
@click.argument("name")
@click.option("-d", "--data", required=True,
              help='JSON payload, @file.json or - for stdin; normally {"instances": [...]}.')
@click.option("--variant", default=None, help="Send to this variant only (SageMaker's TargetVariant).")
@click.option("-t", "--target", default=None, help="The endpoint's target, when the name is on several.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the answer.")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True,
              help="json: the response body; text: also the variant that answered and the latency.")
@click.option("--repeat", type=click.IntRange(1, 1_000_000), default=1, show_default=True,
              help="Send the request N times, one after another; print the last answer and, on stderr, "
                   "how many each variant answered and the latency p50/p99.")
def invoke(name: str, data: str, variant: Optional[str], target: Optional[str], timeout: float, fmt: str,
           repeat: int) -> None:
    """Send a JSON request to endpoint NAME and print the answer, e.g.
    `unijob invoke digits --data '{"instances": [[0, 1, ...]]}'` (or `--data @request.json`)."""
    from collections import Counter

    from unijob.api import endpoints as api

    payload = _read_data(data)
    ep = api.endpoint(name, target)
    seen: Counter = Counter()
    latencies = []
    for _ in range(repeat):
        result = ep.invoke(variant=variant, body=payload, timeout=timeout)
        seen[result.variant or "?"] += 1
        latencies.append(result.latency_seconds)
    if fmt == "text" or repeat > 1:
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        shares = ", ".join(f"{v} {n} ({100 * n / repeat:.1f}%)" for v, n in seen.most_common())
        click.echo(f"# {name} on {ep.target}: {repeat} request(s); variant {shares}; "
                   f"latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms", err=True)
    click.echo(json.dumps(result.body))
