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


def _org(**flags):
    from unijob.cost.config import load_org

    return load_org().with_overrides(**flags)


def _console(Console):
    con = Console()
    return con if con.is_terminal else Console(width=200)


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("breakeven")
@click.option("--r", "--raw-hour", "raw_hour", type=float, help="r: raw USD per accelerator-hour.")
@click.option("--salary", type=float, help="Fully-loaded USD per platform engineer per year.")
@click.option("--team-size", type=float, help="Platform engineers; T = salary x team size.")
@click.option("--T", "--team-cost", "team_cost", type=float, help="T: platform team USD per year (instead of salary x size).")
@click.option("--eta-s", type=float, help="Self-managed utilization, (0, 1].")
@click.option("--markup", "-m", type=float, help="m: managed USD/h = m x r.")
@click.option("--eta-m", type=float, help="Managed utilization, (0, 1].")
@click.option("--u", "useful_hours", help="Your useful accelerator-hours per year (e.g. 150000 or 150_000).")
@click.option("--rows", help="Table rows: comma-separated u values (default the seed's 2000,...,3000000).")
@click.option("--other-markup", type=float, default=2.2, show_default=True, help="Markup for the sensitivity line.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write both TCO curves to this PNG (needs unijob[plot]).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def breakeven(raw_hour, salary, team_size, team_cost, eta_s, markup, eta_m, useful_hours, rows, other_markup,
              plot_path, output):
    """Build vs buy: the useful accelerator-hours per year at which a self-managed cluster gets cheaper.

    u* = T / (r (m/eta_m - 1/eta_s)) (seed 000, section 5). Defaults: unijob.toml [cost], else the seed's
    parameters (r=12, 220,000 x 2, eta_s=0.55, m=1.6, eta_m=0.80).
    """
    from unijob.cost import breakeven as be
    from unijob.errors import UsageError

    u = _number(useful_hours)
    if u is not None and u <= 0:
        raise UsageError(f"--u (useful accelerator-hours per year) must be positive, got {useful_hours}")
    us = [_number(x) for x in _split_thousands(rows)] if rows else list(be.SEED_U_ROWS)
    if any(x is None or x < 0 for x in us):
        raise UsageError("--rows must be non-negative numbers separated by commas")
    if other_markup is not None and other_markup <= 0:
        raise UsageError(f"--other-markup must be positive, got {other_markup}")
    org = _org(raw_hour=raw_hour, salary=salary, team_size=team_size, team_cost=team_cost, eta_s=eta_s,
               markup=markup, eta_m=eta_m, useful_hours=u)
    p = org.breakeven_params()
    u = org.useful_hours
    if plot_path:
        be.plot(p, plot_path, us, u)
    if output == "json":
        data = be.report(p, us, u, other_markup)
        if plot_path:
            data["plot"] = plot_path
        _print_json(data)
        return
    click.echo(be.format_report(p, us, u, other_markup))
    if plot_path:
        click.echo(f"\nplot written to {plot_path}")


@click.command("cost")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--targets", help="Comma-separated targets (default: local,sagemaker,vertex,databricks,kubernetes).")
@click.option("--u", "useful_hours", help="Useful accelerator-hours per year (for kubernetes' share T/u).")
@click.option("--eta-s", type=float, help="Self-managed utilization, (0, 1].")
@click.option("--eta-m", type=float, help="Managed utilization, (0, 1].")
@click.option("--T", "--team-cost", "team_cost", type=float, help="Platform team USD per year.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def cost(spec, targets, useful_hours, eta_s, eta_m, team_cost, output):
    """What SPEC costs on each target: instance x count, on-demand and spot USD/h, hours, spot overhead
    (Young/Daly checkpoint interval), billed and organisation totals; the cheapest marked."""
    from unijob.cost.breakeven import _positive, _utilization
    from unijob.cost.estimate import estimate
    from unijob.errors import UsageError
    from unijob.loading import load_spec

    u = _number(useful_hours)
    if u is not None:
        _positive("--u (useful accelerator-hours per year)", u)
    if eta_s is not None:
        _utilization("--eta-s", eta_s)
    if eta_m is not None:
        _utilization("--eta-m", eta_m)
    if team_cost is not None:
        _positive("--team-cost", team_cost)
    org = _org(useful_hours=u, eta_s=eta_s, eta_m=eta_m, team_cost=team_cost)
    _utilization("eta_s", org.eta_s)
    _utilization("eta_m", org.eta_m)
    names = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    if names == []:
        raise UsageError("--targets is empty")
    loaded = load_spec(spec, check_targets=False, check_paths=False)
    rows = estimate(loaded.spec, names, org)
    if output == "json":
        _print_json({"spec": str(loaded.path), "org": {"eta_s": org.eta_s, "eta_m": org.eta_m, "T": org.T,
                                                        "useful_hours": org.useful_hours, "source": org.source},
                     "targets": [r.as_dict() for r in rows]})
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{loaded.spec.name}: expected cost per run (USD)", title_justify="left")
    for col, just in (("target", "left"), ("instance x n", "left"), ("region", "left"), ("on-demand $/h", "right"),
                      ("spot $/h", "right"), ("hours", "right"), ("spot overhead h", "right"), ("billed $", "right"),
                      ("util", "right"), ("team share $", "right"), ("total $", "right"), ("", "left")):
        t.add_column(col, justify=just)
    for r in rows:
        if not r.available:
            t.add_row(r.target, f"[dim]not offered: {r.reason}[/dim]", *[""] * 10)
            continue
        inst = f"{r.instance_type} x {r.instances}" if r.instance_type else f"this machine x {r.instances}"
        t.add_row(r.target, inst, r.region or "-", f"{r.on_demand_usd_hour:,.2f}",
                  "-" if r.spot_usd_hour is None else f"{r.spot_usd_hour:,.2f}", f"{r.hours:,.2f}",
                  "-" if r.spot_overhead_hours is None else f"{r.spot_overhead_hours:,.2f}",
                  f"{r.billed_usd:,.2f}", f"{r.utilization:g}", f"{r.platform_share_usd:,.2f}", f"{r.total_usd:,.2f}",
                  "<- cheapest" if r.cheapest else "")
    con = _console(Console)
    con.print(t)
    policy = loaded.spec.spot.policy
    con.print(f"policy {policy}; total = billed / utilization (+ T/u per accelerator-hour for kubernetes); "
              f"org parameters from {org.source}", highlight=False)
    for r in rows:
        if r.available and r.checkpoint_interval_seconds:
            con.print(f"{r.target}: checkpoint every {r.checkpoint_interval_seconds:,.0f} s ({r.checkpoint_rule})", highlight=False)
        for n in r.notes:
            con.print(f"{r.target}: {n}", highlight=False)


@click.group("catalog")
def catalog():
    """The price catalog: where each accelerator is offered, and refreshing prices."""


_SERVICES = {"sagemaker": ("sagemaker-training",), "ec2": ("ec2",), "gcp": ("vertex-training", "gce"), "azure": ("azure-vm",)}


def gpu_offers(acc: str | None = None, region: str | None = None) -> list[dict]:
    """Rows of ``catalog gpus``: accelerator, count, service, instance, region, USD/h on-demand and spot."""
    from unijob.cost import catalog as cat
    from unijob.cost import prices
    from unijob.cost.prices import price
    from unijob.cost.catalog import NoOffering

    table = prices.prices()
    out = []
    for s in cat.shapes():
        if not s.accelerator or (acc and s.accelerator != acc):
            continue
        for service in _SERVICES[s.family]:
            for reg in sorted({k[1] for k in table if k[0] == service}):
                if region and reg != region:
                    continue
                try:
                    od = price(service, reg, s.instance_type)
                except NoOffering:
                    continue
                on, sp = od.on_demand, od.spot
                if s.family == "gcp" and s.instance_type.startswith("n1-"):
                    g = table.get((service, reg, f"gpu:{s.accelerator}"))
                    if g is None:
                        continue
                    on += g.on_demand * s.accelerator_count
                    sp = None if sp is None or g.spot is None else sp + g.spot * s.accelerator_count
                out.append({"accelerator": s.accelerator, "count": s.accelerator_count, "service": service,
                            "instance_type": s.instance_type, "region": reg, "on_demand_usd_hour": round(on, 4),
                            "spot_usd_hour": None if sp is None else round(sp, 4), "as_of": od.as_of})
    out.sort(key=lambda r: (r["accelerator"], r["count"], r["on_demand_usd_hour"]))
    return out


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
    rows = gpu_offers(acc, region)
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
                  f"{r['on_demand_usd_hour']:,.2f}", "-" if r["spot_usd_hour"] is None else f"{r['spot_usd_hour']:,.2f}",
                  r["as_of"])
    _console(Console).print(t)


@catalog.command("refresh")
@click.option("--region", "regions", multiple=True, help="Regions to pull (default: the catalog's regions).")
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds per request.")
def refresh(regions, timeout):
    """Pull fresh prices: AWS Price List bulk files (AmazonSageMaker, AmazonEC2) and the Cloud Billing
    Catalog API (Compute Engine, needs UNIJOB_GCP_API_KEY). Offline: exit 4."""
    from unijob.cost import refresh as rf

    n, path, notes = rf.refresh(list(regions) or None, timeout=timeout)
    for line in notes:
        click.echo(line)
    click.echo(f"{n} price rows written to {path}")
