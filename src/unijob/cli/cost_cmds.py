"""CLI commands of the cost module: ``breakeven``, ``cost SPEC`` and ``catalog gpus|refresh``.

Loaded lazily by the main CLI as ``unijob.cli.cost_cmds:breakeven``, ``:cost`` and ``:catalog``.
Importing this module imports click only; the cost code, rich and matplotlib load inside the
commands. Errors are raised as :mod:`unijob.errors` exceptions; the main CLI prints them and exits
with ``err.exit_code`` (2 bad input, 3 not installed, 4 remote/offline).
"""

from __future__ import annotations

import json

import click


def _number(value):
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(str(value).replace(",", "").replace("_", ""))
    except ValueError:
        raise click.BadParameter(f"expected a number, got {value!r}") from None


def _split_thousands(text: str) -> list[str]:
    # "2000,10000" is a list; "2,000,10,000" is ambiguous: accept plain integers separated by commas.
    return [p for p in text.split(",") if p.strip()]


def _console(Console):
    con = Console()
    return con if con.is_terminal else Console(width=200)


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("breakeven")
@click.option("--accelerator", "-a", help="Price r and m from the catalog for one node of TYPE:COUNT, e.g. H100:8.")
@click.option("--managed", type=click.Choice(["sagemaker", "vertex", "databricks"]),
              help="Managed target of the catalog break-even (default sagemaker).")
@click.option("--self", "self_target", help="Self-managed target: kubernetes (default), slurm, ray.")
@click.option("--region", help="Region of both sides (default: unijob.toml [cost.regions] of the managed cloud).")
@click.option("--r", "--raw-hour", "raw_hour", type=float, help="r: raw USD per accelerator-hour (overrides the catalog).")
@click.option("--salary", type=float, help="Fully-loaded USD per platform engineer per year.")
@click.option("--team-size", type=float, help="Platform engineers; T = salary x team size.")
@click.option("--T", "--team-cost", "team_cost", type=float, help="T: platform team USD per year (instead of salary x size).")
@click.option("--eta-s", type=float, help="Self-managed utilization, (0, 1].")
@click.option("--markup", "-m", type=float, help="m: managed USD/h = m x r (overrides the catalog).")
@click.option("--eta-m", type=float, help="Managed utilization, (0, 1].")
@click.option("--u", "useful_hours", help="Your useful accelerator-hours per year (e.g. 150000 or 150_000).")
@click.option("--rows", help="Table rows: comma-separated u values (default the seed's 2000,...,3000000).")
@click.option("--other-markup", type=float, default=2.2, show_default=True, help="Markup for the exercise line.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw both TCO curves, u* and your u to FILE.png or FILE.svg (needs unijob[plot]).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def breakeven(accelerator, managed, self_target, region, raw_hour, salary, team_size, team_cost, eta_s, markup,
              eta_m, useful_hours, rows, other_markup, plot_path, output):
    """Build vs buy: the useful accelerator-hours per year at which a self-managed cluster gets cheaper.

    u* = T / (r (m/eta_m - 1/eta_s)) (seed 000, section 5). With --accelerator, r and m come from the
    catalog (e.g. --accelerator H100:8 --managed sagemaker --self kubernetes); without it, from
    unijob.toml [cost], else the seed's parameters (r=12, 220,000 x 2, eta_s=0.55, m=1.6, eta_m=0.80).
    Every figure says where it came from; the sensitivity moves T, r, m, eta_s, eta_m by +-20%.
    """
    from unijob.cost import report
    from unijob.errors import UsageError

    u = _number(useful_hours)
    if u is not None and u <= 0:
        raise UsageError(f"--u (useful accelerator-hours per year) must be positive, got {useful_hours}")
    us = [_number(x) for x in _split_thousands(rows)] if rows else None
    if us is not None and any(x is None or x < 0 for x in us):
        raise UsageError("--rows must be non-negative numbers separated by commas")
    if other_markup is not None and other_markup <= 0:
        raise UsageError(f"--other-markup must be positive, got {other_markup}")
    rep = report.breakeven(accelerator=accelerator, managed=managed, self_target=self_target, region=region,
                           raw_hour=raw_hour, salary=salary, team_size=team_size, team_cost=team_cost, eta_s=eta_s,
                           markup=markup, eta_m=eta_m, useful_hours=u, rows=us, other_markup=other_markup,
                           plot=plot_path)
    if output == "json":
        _print_json(rep.as_dict())
        return
    click.echo(rep.format())


_EST = "~"


def _money(value, estimated: bool, fmt: str = "{:,.2f}") -> str:
    return (_EST if estimated else "") + fmt.format(value)


@click.command("cost")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--targets", help="Comma-separated targets (default: local,sagemaker,vertex,databricks,kubernetes,slurm,ray).")
@click.option("--u", "useful_hours", help="Useful accelerator-hours per year (for the self-managed share F/u).")
@click.option("--eta-s", type=float, help="Self-managed utilization, (0, 1].")
@click.option("--eta-m", type=float, help="Managed utilization, (0, 1].")
@click.option("--T", "--team-cost", "team_cost", type=float, help="Platform team USD per year.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def cost(spec, targets, useful_hours, eta_s, eta_m, team_cost, output):
    """What SPEC costs on each target: instance x count, on-demand and spot USD/h, hours, spot overhead
    (Young/Daly checkpoint interval), billed and organisation totals; the cheapest marked; '~' marks a
    figure that rests on a derived or assumed price."""
    from unijob.cost import report
    from unijob.errors import UsageError

    u = _number(useful_hours)
    names = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    if names == []:
        raise UsageError("--targets is empty")
    rep = report.cost(spec, targets=names, useful_hours=u, eta_s=eta_s, eta_m=eta_m, team_cost=team_cost)
    if output == "json":
        _print_json(rep.as_dict())
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{rep.spec_name}: expected cost per run (USD)", title_justify="left")
    for col, just in (("target", "left"), ("instance x n", "left"), ("region", "left"), ("on-demand $/h", "right"),
                      ("spot $/h", "right"), ("hours", "right"), ("spot overhead h", "right"), ("billed $", "right"),
                      ("util", "right"), ("fixed share $", "right"), ("total $", "right"), ("", "left")):
        t.add_column(col, justify=just)
    any_est = False
    for r in rep.rows:
        if not r.available:
            t.add_row(r.target, f"[dim]not offered: {escape(r.reason)}[/dim]", *[""] * 10)
            continue
        e = set(r.estimated)
        any_est = any_est or bool(e)
        inst = f"{r.instance_type} x {r.instances}" if r.instance_type else f"this machine x {r.instances}"
        t.add_row(r.target, escape(inst), r.region or "-", _money(r.on_demand_usd_hour, "on_demand_usd_hour" in e),
                  "-" if r.spot_usd_hour is None else _money(r.spot_usd_hour, "spot_usd_hour" in e), f"{r.hours:,.2f}",
                  "-" if r.spot_overhead_hours is None else _money(r.spot_overhead_hours, "spot_overhead_hours" in e),
                  _money(r.billed_usd, "billed_usd" in e), f"{r.utilization:g}", f"{r.platform_share_usd:,.2f}",
                  _money(r.total_usd, "total_usd" in e), "<- cheapest" if r.cheapest else "")
    con = _console(Console)
    con.print(t)
    org = rep.org
    con.print(f"policy {rep.rows[0].policy}; total = billed / utilization (+ F/u per accelerator-hour for self-managed "
              f"targets, F = platform team T + control-plane fees); org parameters from {org['source']}", highlight=False)
    if any_est:
        con.print("~ = estimate: rests on a derived or assumed figure, not a published price (why below)", highlight=False)
    for r in rep.rows:
        if r.available and r.checkpoint_interval_seconds:
            con.print(f"{r.target}: checkpoint every {r.checkpoint_interval_seconds:,.0f} s ({r.checkpoint_rule})", highlight=False)
        for n in r.notes:
            con.print(f"{r.target}: {n}", highlight=False)
        for n in r.estimate_notes:
            if n not in r.notes:
                con.print(f"{r.target}: ~ {n}", highlight=False)


@click.group("catalog")
def catalog():
    """The price catalog: where each accelerator is offered, and refreshing prices."""


@catalog.command("gpus")
@click.argument("accelerator", required=False)
@click.option("--region", help="Only this region.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def gpus(accelerator, region, output):
    """Where each accelerator (or ACCELERATOR, e.g. A100 or H100) is offered, on which instance, at what price."""
    from unijob import accelerators
    from unijob.errors import UsageError

    acc = None
    if accelerator:
        try:
            acc = accelerators.canonical(accelerator)
        except accelerators.AcceleratorError as e:
            raise UsageError(str(e), hint=f"did you mean '{e.suggestion}'?" if e.suggestion else None) from None
    from unijob.cost import report

    rows = report.gpu_offers(acc, region)
    if not rows:
        raise UsageError(f"no offers for {acc or 'any accelerator'}{' in ' + region if region else ''}")
    if output == "json":
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="accelerator offers (USD per instance-hour, list price)", title_justify="left")
    for col, just in (("accelerator", "left"), ("count", "right"), ("service", "left"), ("instance", "left"),
                      ("region", "left"), ("on-demand $/h", "right"), ("spot $/h", "right"), ("as of", "left")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r["accelerator"], str(r["count"]), r["service"], r["instance_type"], r["region"],
                  _money(r["on_demand_usd_hour"], r["on_demand_estimate"]),
                  "-" if r["spot_usd_hour"] is None else _money(r["spot_usd_hour"], r["spot_estimate"]),
                  r["as_of"])
    con = _console(Console)
    con.print(t)
    if any(r["on_demand_estimate"] or r["spot_estimate"] for r in rows):
        con.print("~ = estimate: derived from another row or assumed (the rule and source are in the catalog's CSV)",
                  highlight=False)


@catalog.command("refresh")
@click.option("--region", "regions", multiple=True, help="Regions to pull (default: the catalog's regions).")
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds per request.")
def refresh(regions, timeout):
    """Pull fresh prices: AWS Price List bulk files (AmazonSageMaker, AmazonEC2) and the Cloud Billing
    Catalog API (Compute Engine, needs UNIJOB_GCP_API_KEY). Offline: exit 4."""
    from unijob.cost import report

    n, path, notes = report.refresh_prices(list(regions) or None, timeout=timeout)
    for line in notes:
        click.echo(line)
    click.echo(f"{n} price rows written to {path}")
