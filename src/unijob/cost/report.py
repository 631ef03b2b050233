"""The cost library: ``cost(spec)`` and ``breakeven(...)`` return reports with every figure the CLI
prints (``unijob cost``, ``unijob breakeven``), each saying where it came from.

``unijob.cost(spec)`` is this module's :func:`cost` (the package is callable), and
``unijob.breakeven`` is :func:`breakeven`.

Break-even from the catalog: given an accelerator (e.g. ``H100:8``), a managed target and a
self-managed one, one node of that accelerator is priced for one on-demand hour on both
(:func:`unijob.cost.estimate.estimate_target`, the same code ``unijob cost`` and ``--target auto`` use),
and :func:`unijob.cost.breakeven.params_from_rows` turns the two rows into r (self-managed USD per
accelerator-hour), m (managed / self-managed for the same accelerator and region) and T (the platform
team plus the control-plane fees). eta_s, eta_m and the team come from ``unijob.toml`` or the seed.
Without an accelerator, r and m are the seed's constants (seed 000, Code 33.9.3) or the file's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import unijob.cost.breakeven as be
from unijob.cost.config import OrgParams
from unijob.errors import UsageError

SEED = "seed 000, section 5 (Code 33.9.3)"
#: Parameters the sensitivity moves, in the seed's notation.
SENSITIVITY_PARAMS = ("T", "r", "m", "eta_s", "eta_m")


# ---- cost ---------------------------------------------------------------------------------------

@dataclass
class CostReport:
    """What a spec costs on each target (``unijob cost``).

    Attributes:
        spec_name, spec_path: the job's name and file (None for an in-memory spec).
        org: eta_s, eta_m, T (USD/year), useful_hours and where they came from.
        rows: one :class:`unijob.cost.estimate.TargetCost` per target (USD, USD/hour, hours).
    """

    spec_name: str
    spec_path: Optional[str]
    org: dict
    rows: list

    @property
    def cheapest(self):
        """The cheapest available non-local row, or None."""
        return next((r for r in self.rows if r.cheapest), None)

    def as_dict(self) -> dict:
        return {"spec": self.spec_path, "name": self.spec_name, "org": self.org,
                "targets": [r.as_dict() for r in self.rows]}


def _org(org: Optional[OrgParams], **flags: Any) -> OrgParams:
    from unijob.cost.config import load_org

    out = (org or load_org()).with_overrides(**flags)
    be._utilization("eta_s (self-managed utilization)", out.eta_s)
    be._utilization("eta_m (managed utilization)", out.eta_m)
    return out


def _load(spec: Any):
    """(JobSpec, path or None) from a path, a JobSpec or a dict."""
    from unijob.spec import JobSpec

    if isinstance(spec, JobSpec):
        return spec, None
    if isinstance(spec, dict):
        from pydantic import ValidationError

        from unijob.errors import SpecError

        try:
            return JobSpec.model_validate(spec), None
        except ValidationError as e:
            raise SpecError(f"invalid spec: {e}") from None
    if isinstance(spec, (str, Path)):
        from unijob.loading import load_spec

        loaded = load_spec(str(spec), check_targets=False, check_paths=False)
        return loaded.spec, str(loaded.path)
    raise UsageError(f"cost(spec): expected a path, a JobSpec or a dict, got {type(spec).__name__}")


def cost(spec: Any, *, targets: Optional[Sequence[str]] = None, org: Optional[OrgParams] = None,
         useful_hours: Optional[float] = None, eta_s: Optional[float] = None, eta_m: Optional[float] = None,
         team_cost: Optional[float] = None) -> CostReport:
    """What ``spec`` (a path, :class:`unijob.spec.JobSpec` or dict) costs on each of ``targets``
    (default every priced target: local, sagemaker, vertex, databricks, kubernetes, slurm, ray).

    Raises:
        SpecError, NoOffering, UsageError: bad spec, an explicit target that cannot run it, bad flags (exit 2).
    """
    from unijob.cost.estimate import estimate

    for name, v in (("useful_hours (u)", useful_hours), ("team_cost (T)", team_cost)):
        if v is not None:
            be._positive(name, v)
    o = _org(org, useful_hours=useful_hours, eta_s=eta_s, eta_m=eta_m, team_cost=team_cost)
    js, path = _load(spec)
    if targets is not None and not list(targets):
        raise UsageError("targets is empty")
    rows = estimate(js, list(targets) if targets is not None else None, o)
    return CostReport(js.name, path, {"eta_s": o.eta_s, "eta_m": o.eta_m, "T": o.T, "useful_hours": o.useful_hours,
                                      "source": o.source}, rows)


# ---- break-even ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sensitivity:
    """u* with one parameter moved by -20% and +20% (None: no break-even); ``effect`` is the larger
    change of u* in accelerator-hours per year (``inf`` when one move removes the break-even)."""

    param: str
    base: float
    low: float
    high: float
    u_low: Optional[float]
    u_high: Optional[float]
    effect: float
    note: str = ""


@dataclass
class BreakEvenReport:
    """Everything ``unijob breakeven`` shows.

    Attributes:
        params: r (USD per accelerator-hour), T (USD/year), eta_s, m, eta_m.
        sources: parameter -> where its value came from (catalog row, file, flag or seed).
        u_star: useful accelerator-hours per year at the crossover, or None (managed never dearer).
        rows: the TCO table (:class:`unijob.cost.breakeven.Row`, USD per year).
        useful_hours: the organisation's own u per year, when known.
        sensitivity: u* with each of T, r, m, eta_s, eta_m moved +-20%, largest effect first.
        exercise: the seed's exercise 33.9.2 lines (one engineer fewer, another markup, the eta_m threshold).
        catalog: for a catalog break-even, the accelerator, targets, region and both priced rows.
        estimate: True when r or m rests on a derived or assumed price.
    """

    params: be.BreakEvenParams
    sources: dict[str, str]
    u_star: Optional[float]
    rows: list
    useful_hours: Optional[float]
    sensitivity: list[Sensitivity]
    exercise: dict
    other_markup: float
    catalog: Optional[dict] = None
    estimate: bool = False
    plot: Optional[str] = None

    @property
    def bracket(self) -> float:
        return be.bracket(self.params)

    def as_dict(self) -> dict:
        d = be.report(self.params, [r.u for r in self.rows], self.useful_hours, self.other_markup)
        d["source"] = SEED if self.catalog is None else "the catalog (see sources)"
        d["sources"] = dict(self.sources)
        d["sensitivity_20pct"] = [asdict(s) for s in self.sensitivity]
        d["catalog"] = self.catalog
        d["estimate"] = self.estimate
        if self.plot:
            d["plot"] = self.plot
        return _finite(d)

    def format(self) -> str:
        """The plain-text report: where each figure came from, the seed's table and crossover lines,
        your u, the +-20% sensitivity and the seed's exercise."""
        p = self.params
        lines = []
        if self.catalog:
            c = self.catalog
            lines.append(f"{c['accelerator']}: {c['managed']} vs {c['self']} ({c['self_hardware']}), "
                         f"region {c['region']}: r and m from the catalog")
        lines += [be.format_table(self.rows), be.RULE, *be.describe_u_star(p), "", "where each figure comes from:"]
        mark = "~" if self.estimate else ""
        lines += [f"  r     = {mark if 'r' in self._est else ''}${p.raw_hour:,.4g} per accelerator-hour   <- {self.sources['r']}",
                  f"  m     = {mark if 'm' in self._est else ''}{p.markup:.4g}   <- {self.sources['m']}",
                  f"  T     = ${p.team_cost:,.0f} per year   <- {self.sources['T']}",
                  f"  eta_s = {p.eta_s:g}   <- {self.sources['eta_s']}",
                  f"  eta_m = {p.eta_m:g}   <- {self.sources['eta_m']}"]
        if self.estimate:
            lines.append(f"  ~ = estimate: {self.catalog['estimate_notes']}")
        if self.useful_hours is not None:
            lines += ["", be.side(p, self.useful_hours)]
        lines += ["", "sensitivity: u* with one parameter moved by -20% / +20%, largest effect first:"]
        for s in self.sensitivity:
            lines.append(f"  {s.param:<6} {_fmt_param(s.param, s.low):>10} -> {_say(s.u_low):>13}   "
                         f"{_fmt_param(s.param, s.high):>10} -> {_say(s.u_high):>13}" + (f"   ({s.note})" if s.note else ""))
        lines += ["", "seed exercise 33.9.2:"] + ["  " + w for w in self.exercise["words"]]
        if self.plot:
            lines += ["", f"plot written to {self.plot}"]
        return "\n".join(lines)

    @property
    def _est(self) -> set:
        return set((self.catalog or {}).get("estimated_params") or [])


def _say(u: Optional[float]) -> str:
    return "no break-even" if u is None else f"{u:,.0f}"


def _fmt_param(name: str, v: float) -> str:
    if name == "T":
        return f"${v:,.0f}"
    if name == "r":
        return f"${v:,.3f}"
    return f"{v:.3g}"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


_FIELD = {"T": "team_cost", "r": "raw_hour", "m": "markup", "eta_s": "eta_s", "eta_m": "eta_m"}


def sensitivity(p: be.BreakEvenParams, frac: float = 0.20) -> list[Sensitivity]:
    """u* with each of T, r, m, eta_s, eta_m moved by -frac and +frac, largest effect first.

    A utilization moved above 1 is held at 1 (said in ``note``). The effect of a move that removes
    (or creates) the break-even is infinite: it changes the decision, not just the number.
    """
    base = be.u_star(p)
    out = []
    for name in SENSITIVITY_PARAMS:
        attr = _FIELD[name]
        v = getattr(p, attr)
        lo, hi = v * (1 - frac), v * (1 + frac)
        note = ""
        if name.startswith("eta") and hi > 1:
            hi, note = 1.0, f"+{frac:.0%} capped at 1"
        ul = be.u_star(replace(p, **{attr: lo}))
        uh = be.u_star(replace(p, **{attr: hi}))
        effects = []
        for u in (ul, uh):
            if (u is None) != (base is None):
                effects.append(math.inf)
            elif u is not None:
                effects.append(abs(u - base))
            else:
                effects.append(0.0)
        out.append(Sensitivity(name, v, lo, hi, ul, uh, max(effects), note))
    return sorted(out, key=lambda s: -s.effect)


def _flag_or(value, flag: str, default, default_source: str) -> tuple[Any, str]:
    return (value, f"--{flag}") if value is not None else (default, default_source)


def breakeven(*, accelerator: Optional[str] = None, managed: Optional[str] = None, self_target: Optional[str] = None,
              region: Optional[str] = None, org: Optional[OrgParams] = None, raw_hour: Optional[float] = None,
              salary: Optional[float] = None, team_size: Optional[float] = None, team_cost: Optional[float] = None,
              eta_s: Optional[float] = None, markup: Optional[float] = None, eta_m: Optional[float] = None,
              useful_hours: Optional[float] = None, rows: Optional[Sequence[float]] = None,
              other_markup: float = be.SEED_OTHER_MARKUP, plot: Optional[Union[str, Path]] = None) -> BreakEvenReport:
    """The build-vs-buy break-even (seed 000, section 5).

    With ``accelerator`` (``"H100:8"``), r and m come from the catalog for ``managed`` (default
    sagemaker) against ``self_target`` (default kubernetes) in ``region`` (default the organisation's
    region of the managed target's cloud); explicit ``raw_hour``/``markup`` still win. Without it, r
    and m are the file's or the seed's (r = 12, m = 1.6). ``plot``: write the curves (.png/.svg).

    Raises:
        UsageError: a bad parameter, an unknown target, a region with no price (exit 2).
        NotReady: ``plot`` without matplotlib (exit 3).
    """
    for name, v in (("useful_hours (u)", useful_hours), ("other_markup", other_markup)):
        if v is not None:
            be._positive(name, v)
    us = list(rows) if rows is not None else list(be.SEED_U_ROWS)
    if any(not isinstance(x, (int, float)) or x < 0 for x in us):
        raise UsageError("rows must be non-negative numbers")
    o = (org or _load_org()).with_overrides(salary=salary, team_size=team_size, team_cost=team_cost, eta_s=eta_s,
                                            eta_m=eta_m, useful_hours=useful_hours)
    filed = o.source if o.source != "defaults" else SEED
    team_src = ("--team-cost" if team_cost is not None else
                "--salary x --team-size" if (salary is not None or team_size is not None) else
                f"salary x team size, {filed}" if o.team_cost is None else f"team_cost, {filed}")
    sources = {"T": team_src,
               "eta_s": "--eta-s" if eta_s is not None else filed,
               "eta_m": "--eta-m" if eta_m is not None else filed}
    catalog_info = None
    estimated = False
    if accelerator is None:
        if managed or self_target or region:
            raise UsageError("--managed, --self and --region price r and m from the catalog: give --accelerator too "
                             "(e.g. --accelerator H100:8)")
        r, sources["r"] = _flag_or(raw_hour, "r", o.raw_hour, filed)
        m, sources["m"] = _flag_or(markup, "markup", o.markup, filed)
        p = _params(o, r, m)
    else:
        base = _params(o, 1.0, 1.0)
        p, catalog_info, cat_sources, estimated = _from_catalog(accelerator, managed or "sagemaker",
                                                                self_target or "kubernetes", region, o, base)
        sources["T"] += cat_sources.pop("T+", "")
        sources.update(cat_sources)
        if raw_hour is not None:
            p, sources["r"] = replace(p, raw_hour=raw_hour).validated(), "--r"
            catalog_info["estimated_params"] = [x for x in catalog_info["estimated_params"] if x != "r"]
        if markup is not None:
            p, sources["m"] = replace(p, markup=markup).validated(), "--markup"
            catalog_info["estimated_params"] = [x for x in catalog_info["estimated_params"] if x != "m"]
        estimated = bool(catalog_info["estimated_params"])
    rep = BreakEvenReport(p, sources, be.u_star(p), be.rows(p, us), o.useful_hours, sensitivity(p),
                          be.sensitivity(p, other_markup), other_markup, catalog_info, estimated)
    if plot:
        title = ("build vs buy: TCO per year (seed 000, section 5)" if catalog_info is None else
                 f"{catalog_info['accelerator']}: {catalog_info['managed']} vs {catalog_info['self']}, "
                 f"{catalog_info['region']} (TCO per year)")
        be.plot(p, str(plot), us, o.useful_hours, title=title)
        rep.plot = str(plot)
    return rep


def _load_org() -> OrgParams:
    from unijob.cost.config import load_org

    return load_org()


def _params(o: OrgParams, r: float, m: float) -> be.BreakEvenParams:
    return replace(o, raw_hour=r, markup=m).breakeven_params()


def _from_catalog(accelerator: str, managed: str, self_target: str, region: Optional[str], o: OrgParams,
                  base: be.BreakEvenParams):
    from unijob import accelerators
    from unijob.cost import selfmanaged
    from unijob.cost.catalog import NoOffering
    from unijob.cost.estimate import MANAGED, _cloud_of, estimate_target
    from unijob.spec import JobSpec

    try:
        acc = accelerators.parse(accelerator)
        acc_type, count = acc.type, acc.count
    except accelerators.AcceleratorError as e:
        raise UsageError(f"--accelerator: {e}", hint=f"did you mean '{e.suggestion}'?" if e.suggestion else None) from None
    if managed not in MANAGED:
        raise UsageError(f"--managed must be one of {', '.join(MANAGED)}, got '{managed}'")
    if not selfmanaged.is_self_managed(self_target, o):
        raise UsageError(f"--self must be a self-managed target ({', '.join(selfmanaged.SELF_MANAGED)}), got '{self_target}'")
    m_cloud = _cloud_of(managed, {})
    reg = region or o.regions.get(m_cloud)
    sm_cfg = (o.self_managed or {}).get(self_target) or {}
    s_opts = {}
    if sm_cfg.get("hardware", "cloud") == "cloud":
        if self_target == "kubernetes" and not sm_cfg.get("provider"):
            s_opts["provider"] = {"aws": "eks", "gcp": "gke", "azure": "aks"}[m_cloud]
        elif self_target != "kubernetes" and not sm_cfg.get("cloud"):
            s_opts["cloud"] = m_cloud
    spec = JobSpec.model_validate({
        "name": "breakeven", "image": "breakeven", "resources": {"accelerator": f"{acc_type}:{count}", "nodes": 1},
        "expected_duration": 3600, "targets": {managed: {"region": reg}, self_target: {**s_opts, "region": reg}}})
    try:
        mrow = estimate_target(spec, managed, o)
        srow = estimate_target(spec, self_target, o)
    except NoOffering as e:
        raise NoOffering(f"--accelerator {accelerator}: {e.message}", e.offered, e.hint) from None
    if srow.region not in ("-", mrow.region):
        raise UsageError(f"{self_target} is priced in {srow.region} and {managed} in {mrow.region}: m compares the same "
                         "region; set --region or the provider/cloud of [cost.self_managed]")
    p = replace(be.params_from_rows(srow, mrow, base.eta_s, base.eta_m), salary=base.salary, team_size=base.team_size)
    acc_h = srow.accelerator_hours
    est = []
    if "on_demand_usd_hour" in srow.estimated:
        est.append("r")
    if "on_demand_usd_hour" in srow.estimated or "on_demand_usd_hour" in mrow.estimated:
        est.append("m")
    why = "; ".join(n for n in srow.estimate_notes + mrow.estimate_notes if "spot" not in n)

    def first(row) -> str:  # the price row's own source, up to its first rule
        return (row.sources[0] if row.sources else "").split("; ")[0]

    sources = {
        "r": f"{self_target} {srow.instance_type} ${srow.on_demand_usd_hour:,.4g}/h / {acc_h:g} accelerators "
             f"[{first(srow)}]",
        "m": f"{managed} {mrow.instance_type} ${mrow.on_demand_usd_hour:,.4g}/h / {self_target} ${srow.on_demand_usd_hour:,.4g}/h"
             f" [{first(mrow)}]",
    }
    if srow.fixed_usd_year > o.T:
        sources["T+"] = f" + control plane ${srow.fixed_usd_year - o.T:,.0f}/year [{srow.fixed_source}]"
    info = {"accelerator": f"{acc_type}:{count}", "managed": managed, "self": self_target, "region": mrow.region,
            "self_hardware": srow.hardware, "managed_row": mrow.as_dict(), "self_row": srow.as_dict(),
            "estimated_params": est, "estimate_notes": why}
    return p, info, sources, bool(est)


# ---- the catalog --------------------------------------------------------------------------------

_SERVICES = {"sagemaker": ("sagemaker-training",), "ec2": ("ec2",), "gcp": ("vertex-training", "gce"), "azure": ("azure-vm",)}


def gpu_offers(acc: Optional[str] = None, region: Optional[str] = None) -> list[dict]:
    """Rows of ``unijob catalog gpus``: accelerator (canonical name), count, service, instance, region,
    USD per instance-hour on-demand and spot, whether each is an estimate (derived or assumed), and
    the date read; ``acc``/``region`` filter."""
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
                on_est, sp_est = od.estimate, od.spot_estimate
                if s.family == "gcp" and s.instance_type.startswith("n1-"):
                    g = table.get((service, reg, f"gpu:{s.accelerator}"))
                    if g is None:
                        continue
                    on += g.on_demand * s.accelerator_count
                    sp = None if sp is None or g.spot is None else sp + g.spot * s.accelerator_count
                    on_est, sp_est = on_est or g.estimate, sp_est or g.spot_estimate
                out.append({"accelerator": s.accelerator, "count": s.accelerator_count, "service": service,
                            "instance_type": s.instance_type, "region": reg, "on_demand_usd_hour": round(on, 4),
                            "spot_usd_hour": None if sp is None else round(sp, 4), "on_demand_estimate": on_est,
                            "spot_estimate": sp is not None and sp_est, "as_of": od.as_of})
    out.sort(key=lambda r: (r["accelerator"], r["count"], r["on_demand_usd_hour"]))
    return out


def refresh_prices(regions: Optional[list[str]] = None, timeout: float = 20.0) -> tuple[int, str, list[str]]:
    """``unijob catalog refresh``: :func:`unijob.cost.refresh.refresh` (rows written, path, notes).

    Raises:
        TargetError: offline or a price API error (exit 4).
    """
    from unijob.cost import refresh

    return refresh.refresh(regions, timeout=timeout)
