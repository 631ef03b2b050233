"""What a spec costs on each target, from the catalog alone (no adapter, no cloud SDK imported).

For each target: the instance and count (the adapters' rule: ``spec.resources.instance_type[target]``
else :func:`unijob.cost.catalog.instance_for`), on-demand and spot USD/hour, expected hours
(``spec.expected_duration`` else ``max_run``), for spot the expected overhead of preemption and
checkpointing, the billed total and the organisation's total (TCO), the cheapest marked.

Spot model. The gang's mean time between preemptions is ``M = M_node / nodes`` (any node's reclaim
stops the gang). With checkpoint cost ``C`` and restart time ``R`` (seconds), the checkpoint interval
is the spec's ``checkpoint.interval`` or Daly's refinement of Young's rule:

- Young (1974), "A first order approximation to the optimum checkpoint interval", CACM 17(9):
  ``tau = sqrt(2 C M)``;
- Daly (2006), "A higher order estimate of the optimum checkpoint interval for restart dumps",
  FGCS 22(3): ``tau = sqrt(2 C M) [1 + sqrt(C / 2M) / 3 + (C / 2M) / 9] - C`` for ``C < 2M``, else ``M``;
  expected wall time for ``Ts`` seconds of work: ``Tw = M e^(R/M) (e^((tau + C)/M) - 1) Ts / tau``.
  Without a checkpoint a preempted run restarts from zero: ``Tw = M e^(R/M) (e^(Ts/M) - 1)``.

Organisation's total (seed 000, section 5): a managed target's billed dollars / ``eta_m``; a
self-managed target's (``kubernetes``, ``slurm``, ``ray``: :mod:`unijob.cost.selfmanaged`) hardware
dollars / ``eta_s`` plus its share of the fixed yearly term ``F = T + control-plane fees``, ``F / u`` per
useful accelerator-hour (a CPU node counts as one accelerator); ``local`` costs $0.

Estimates. Each row lists in ``estimated`` the figures that rest on a derivation or an assumption
rather than a published price (``on_demand_usd_hour``, ``spot_usd_hour``, ``spot_overhead_hours``,
``billed_usd``, ``total_usd``), and in ``estimate_notes`` why; ``unijob cost`` prints them with ``~``.

Databricks: nodes x (VM USD/h + DBU/h x USD/DBU x (1 - discount)); a gang of more than one node also
pays a driver node of the same type (Databricks job clusters have one driver); DBUs are not
discounted on spot. Source of the rates: ``data/databricks.csv``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from unijob.cost import catalog, prices, selfmanaged
from unijob.cost.catalog import NoOffering
from unijob.cost.config import OrgParams
from unijob.errors import UsageError

TARGETS: tuple[str, ...] = ("local", "sagemaker", "vertex", "databricks", "kubernetes", "slurm", "ray")
MANAGED = ("sagemaker", "vertex", "databricks")
SELF_MANAGED = selfmanaged.SELF_MANAGED


@dataclass(frozen=True)
class Preemption:
    """Spot defaults of one cloud: ``mtbp_hours`` per node, checkpoint cost ``checkpoint_seconds`` (C),
    ``restart_seconds`` (R), and where the figures come from."""

    mtbp_hours: float
    checkpoint_seconds: float
    restart_seconds: float
    source: str


_C_R = ("C = 120 s and R = 600 s are assumptions (write of a multi-GB checkpoint to object storage; "
        "re-acquiring capacity, pulling the image and reloading)")
#: Per-cloud spot defaults; override per target with [cost.preemption.<target>].
PREEMPTION: dict[str, Preemption] = {
    "aws": Preemption(730 / 0.20, 120, 600,
                      "M: AWS Spot Instance Advisor's highest interruption bucket '>20%' of instances per month "
                      "(https://aws.amazon.com/ec2/spot/instance-advisor/), read as 730 h / 0.20; " + _C_R),
    "gcp": Preemption(24 / 0.15, 120, 600,
                      "M: Google's preemptible-VM guidance of a 5-15% preemption rate per day "
                      "(https://cloud.google.com/compute/docs/instances/preemptible), upper end: 24 h / 0.15; " + _C_R),
    "azure": Preemption(730 / 0.20, 120, 600,
                        "M: Azure Spot eviction-rate bucket '20+%' (Azure portal spot advisor), read as 730 h / 0.20; " + _C_R),
}


def young_interval(C: float, M: float) -> float:
    """Young (1974) CACM 17(9): tau = sqrt(2 C M), seconds."""
    return math.sqrt(2 * C * M)


def daly_interval(C: float, M: float) -> float:
    """Daly (2006) FGCS 22(3), higher-order optimum: sqrt(2CM)[1 + sqrt(C/2M)/3 + (C/2M)/9] - C
    for C < 2M, else M (seconds)."""
    if C >= 2 * M:
        return M
    x = C / (2 * M)
    return math.sqrt(2 * C * M) * (1 + math.sqrt(x) / 3 + x / 9) - C


def expected_wall(Ts: float, M: float, C: float, R: float, tau: Optional[float]) -> float:
    """Expected wall-clock seconds for ``Ts`` seconds of work under preemptions with mean ``M``
    (Daly 2006, complete model); ``tau`` None = no checkpoints (restart from zero)."""
    if tau is None:
        return M * math.exp(R / M) * math.expm1(Ts / M)
    return M * math.exp(R / M) * math.expm1((tau + C) / M) * Ts / tau


@dataclass
class TargetCost:
    """One target's row. Money in USD, rates in USD/hour, times in hours unless named ``_seconds``."""

    target: str
    available: bool = True
    reason: str = ""
    family: str = ""
    region: str = ""
    instance_type: str = ""
    instances: int = 0
    accelerators_per_instance: int = 0
    on_demand_usd_hour: float = 0.0
    spot_usd_hour: Optional[float] = None
    hours: float = 0.0
    policy: str = "on_demand"
    spot_hours: Optional[float] = None
    spot_overhead_hours: Optional[float] = None
    checkpoint_interval_seconds: Optional[float] = None
    checkpoint_rule: str = ""
    billed_on_demand_usd: float = 0.0
    billed_spot_usd: Optional[float] = None
    billed_usd: float = 0.0
    utilization: float = 1.0
    platform_share_usd: float = 0.0
    total_usd: float = 0.0
    cheapest: bool = False
    self_managed: bool = False
    hardware: str = ""
    fixed_usd_year: float = 0.0
    fixed_source: str = ""
    estimated: list[str] = field(default_factory=list)
    estimate_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def accelerator_hours(self) -> float:
        """Accelerator-hours this run reserves (instances x accelerators, a CPU node counting one, x hours)."""
        return self.instances * max(self.accelerators_per_instance, 1) * self.hours

    def _estimate(self, what: str, why: str) -> None:
        if what not in self.estimated:
            self.estimated.append(what)
        if why and why not in self.estimate_notes:
            self.estimate_notes.append(why)

    def as_dict(self) -> dict:
        return asdict(self)


def _cloud_of(target: str, opts: dict) -> str:
    if target == "sagemaker":
        return "aws"
    if target == "vertex":
        return "gcp"
    if target == "databricks":
        cloud = str(opts.get("cloud") or "aws").lower()
        if cloud not in ("aws", "azure", "gcp"):
            raise UsageError(f"targets.databricks.cloud must be aws, azure or gcp, got '{cloud}'")
        return cloud
    raise UsageError(f"unknown target '{target}'; expected one of {', '.join(TARGETS)}")


_FAMILY = {"aws": "ec2", "gcp": "gcp", "azure": "azure"}
_SERVICE = {("sagemaker", "aws"): "sagemaker-training", ("vertex", "gcp"): "vertex-training"}
_VM_SERVICE = {"aws": "ec2", "gcp": "gce", "azure": "azure-vm"}


def _hourly(service: str, region: str, shape: catalog.Shape, row: "TargetCost") -> tuple[float, Optional[float], list[str]]:
    """(on-demand, spot, sources) USD per instance-hour, adding attached GPUs for gcp n1-* shapes;
    marks ``row``'s estimated figures."""
    found = [prices.price(service, region, shape.instance_type)]
    p = found[0]
    od, sp, src = p.on_demand, p.spot, [f"{service}/{region}/{shape.instance_type}: {p.source} ({p.as_of})"]
    if shape.family == "gcp" and shape.instance_type.startswith("n1-") and shape.accelerator:
        g = prices.price(service, region, f"gpu:{shape.accelerator}")
        found.append(g)
        od += g.on_demand * shape.accelerator_count
        sp = None if (sp is None or g.spot is None) else sp + g.spot * shape.accelerator_count
        src.append(f"{service}/{region}/gpu:{shape.accelerator} x {shape.accelerator_count}: {g.source} ({g.as_of})")
    for q in found:
        if q.estimate:
            row._estimate("on_demand_usd_hour", f"{q.service}/{q.region}/{q.instance_type} on-demand is {q.basis}")
        if sp is not None and q.spot_estimate:
            row._estimate("spot_usd_hour", f"{q.service}/{q.region}/{q.instance_type} spot is {q.spot_basis}")
    return od, sp, src


def _shape(spec, target: str, family: str) -> catalog.Shape:
    res = spec.resources
    explicit = res.instance_type.get(target)
    if explicit:
        s = catalog.shape(family, explicit)
        if s is None:
            raise NoOffering(f"resources.instance_type.{target} = '{explicit}' is not in the {family} catalog")
        return s
    return catalog.instance_for(family, res.accelerator_type, res.accelerator_count,
                                cpus=res.cpus, memory_gib=res.memory_gib)


def _region(target: str, cloud: str, opts: dict, org: OrgParams) -> str:
    return str(opts.get("region") or opts.get("location") or org.regions.get(cloud) or "")


def estimate_target(spec, target: str, org: OrgParams) -> TargetCost:
    """One target's cost row.

    Raises:
        NoOffering: the target's family lacks the accelerator/count, or the region lacks the instance (exit 2).
        UsageError: bad target options for pricing, or a Databricks compute type that is serverless or has no
            USD/DBU row (exit 2).
    """
    hours = spec.expected_seconds / 3600.0
    row = TargetCost(target=target, hours=hours, policy=spec.spot.policy)
    if target == "local":
        row.instances = spec.resources.nodes
        row.notes.append("this machine: no charge counted")
        return row
    opts = spec.target_options(target)
    nodes = spec.resources.nodes
    instances = nodes
    sm = None
    if selfmanaged.is_self_managed(target, org):
        sm = selfmanaged.for_target(target, org, opts)
        row.self_managed, row.hardware = True, sm.hardware
        row.fixed_usd_year = sm.fixed_usd_year(org.T)
        row.fixed_source = sm.source
        if sm.control_plane_usd_hour:
            row.notes.append(f"control plane {sm.provider.upper()} ${sm.control_plane_usd_hour:g}/cluster-hour x "
                             f"{sm.clusters} = ${sm.control_plane_usd_year:,.0f}/year, in the fixed term with T")
    if sm is not None and sm.hardware == "owned":
        return _owned(spec, row, sm, org)
    cloud = sm.cloud if sm is not None else _cloud_of(target, opts)
    family = "sagemaker" if target == "sagemaker" else _FAMILY[cloud]
    shape = _shape(spec, target, family)
    region = _region(target, cloud, opts, org)
    service = _SERVICE.get((target, cloud), _VM_SERVICE[cloud])
    od, sp, src = _hourly(service, region, shape, row)
    if sm is not None:
        src.append(sm.source)
    row.family, row.region, row.instance_type = family, region, shape.instance_type
    row.accelerators_per_instance = shape.accelerator_count
    if target == "databricks":
        rates = prices.databricks()
        dbx = org.databricks
        ctype = str(dbx.get("compute_type") or "jobs_compute")
        if "serverless" in ctype:
            raise UsageError(f"[cost.databricks] compute_type '{ctype}' is serverless: its USD/DBU includes the compute and "
                             "its DBUs are not billed per node, so it cannot be priced as nodes x (VM + DBU/h); use a "
                             "classic compute type (jobs_compute, jobs_compute_photon, all_purpose_compute)")
        usd_dbu = (dbx.get("usd_per_dbu") or {}).get(ctype, rates.usd_per_dbu.get((cloud, ctype)))
        if usd_dbu is None:
            raise UsageError(f"no Databricks rate for compute type '{ctype}' on {cloud}; known: "
                             + ", ".join(sorted({k[1] for k in rates.usd_per_dbu if k[0] == cloud})))
        dbu_h = (dbx.get("dbu_per_hour") or {}).get(shape.instance_type, rates.dbu_per_hour.get((cloud, shape.instance_type)))
        if dbu_h is None:
            dbu_h = round(shape.vcpus * 0.17, 2)
            why = (f"no DBU/h row for {shape.instance_type}: {dbu_h} DBU/h estimated as 0.17 x vCPUs "
                   "(an unsourced rule: the m5.xlarge ratio 0.69/4)")
            row.notes.append(why)
            row._estimate("on_demand_usd_hour", why)
            if sp is not None:
                row._estimate("spot_usd_hour", why)
        elif shape.instance_type not in (dbx.get("dbu_per_hour") or {}) and rates.estimate("node", cloud, shape.instance_type):
            row._estimate("on_demand_usd_hour", f"DBU/h of {shape.instance_type} is an assumption (data/databricks.csv)")
            if sp is not None:
                row._estimate("spot_usd_hour", f"DBU/h of {shape.instance_type} is an assumption (data/databricks.csv)")
        disc = float(dbx.get("discount") or 0.0)
        dbu_usd_h = dbu_h * usd_dbu * (1 - disc)
        od, sp = od + dbu_usd_h, (None if sp is None else sp + dbu_usd_h)
        instances = nodes if nodes == 1 else nodes + 1
        if nodes > 1:
            row.notes.append("one driver node of the same type added (Databricks job cluster)")
        row.notes.append(f"{dbu_h:g} DBU/h x ${usd_dbu:g}/DBU ({ctype}{f', {disc:.0%} off' if disc else ''}) per node")
        src.append(rates.sources.get(("rate", cloud, ctype), "user override"))
    row.instances = instances
    row.on_demand_usd_hour, row.spot_usd_hour = od, sp
    if row.spot_usd_hour is None:
        row.estimated = [e for e in row.estimated if e != "spot_usd_hour"]
    row.sources = src
    row.billed_on_demand_usd = od * instances * hours
    if sp is not None:
        pre = _preemption(target, cloud, org)
        M = pre.mtbp_hours * 3600 / nodes
        C, R = pre.checkpoint_seconds, pre.restart_seconds
        Ts = hours * 3600
        if spec.checkpoint is None:
            tau, rule = None, "no checkpoint in the spec: a preempted run restarts from zero"
        elif spec.checkpoint.interval:
            tau, rule = float(spec.checkpoint.interval), "checkpoint.interval from the spec"
        else:
            tau = daly_interval(C, M)
            rule = f"Daly (2006) refinement of Young's sqrt(2CM) = {young_interval(C, M):,.0f} s"
        tw = expected_wall(Ts, M, C, R, tau)
        row.checkpoint_interval_seconds, row.checkpoint_rule = tau, rule
        row.spot_hours = tw / 3600
        row.spot_overhead_hours = row.spot_hours - hours
        row.billed_spot_usd = sp * instances * row.spot_hours
        if base_pre_assumed(target, org):
            row._estimate("spot_overhead_hours", "spot overhead rests on an assumed preemption rate M, C and R")
        row.sources.append(f"preemption ({target}): M_node = {pre.mtbp_hours:,.0f} h, C = {C:g} s, R = {R:g} s; {pre.source}")
    if spec.spot.is_spot and row.billed_spot_usd is not None:
        row.billed_usd = row.billed_spot_usd
        if any(f in row.estimated for f in ("spot_usd_hour", "spot_overhead_hours")):
            row._estimate("billed_usd", "")
    else:
        if spec.spot.is_spot:
            row.notes.append("no spot price in the catalog: priced on-demand")
        row.billed_usd = row.billed_on_demand_usd
        if "on_demand_usd_hour" in row.estimated:
            row._estimate("billed_usd", "")
    return _total(row, org)


def _total(row: TargetCost, org: OrgParams) -> TargetCost:
    """The organisation's total: billed / eta_m (managed) or billed / eta_s + F/u per accelerator-hour."""
    if "billed_usd" in row.estimated:
        row._estimate("total_usd", "")
    if not row.self_managed:
        row.utilization = org.eta_m
        row.total_usd = row.billed_usd / org.eta_m
        return row
    row.utilization = org.eta_s
    if org.useful_hours:
        row.platform_share_usd = row.accelerator_hours * row.fixed_usd_year / org.useful_hours
    else:
        row.notes.append("useful_hours (u) unknown: the fixed term's share F/u (platform team"
                         + (", control plane" if row.fixed_usd_year > org.T else "") + ") is not charged")
    row.total_usd = row.billed_usd / org.eta_s + row.platform_share_usd
    return row


def base_pre_assumed(target: str, org: OrgParams) -> bool:
    """The preemption figures are the shipped assumptions (not the organisation's own)."""
    return not org.preemption.get(target)


def _owned(spec, row: TargetCost, sm: "selfmanaged.SelfManaged", org: OrgParams) -> TargetCost:
    """A self-managed target on owned nodes: USD per node-hour from depreciation, power and colocation."""
    hw = sm.owned
    res = spec.resources
    if res.accelerator_type is not None:
        if hw.accelerator and hw.accelerator != res.accelerator_type:
            raise NoOffering(f"your owned {row.target} nodes carry {hw.accelerator}, the spec asks for {res.accelerator_type}")
        if res.accelerator_count > hw.accelerators_per_node:
            raise NoOffering(f"your owned {row.target} nodes carry {hw.accelerators_per_node} accelerators, "
                             f"the spec asks for {res.accelerator_count} per node", [hw.accelerators_per_node])
    row.family, row.region = "owned", "-"
    row.instance_type = f"owned node ({hw.accelerators_per_node} x {hw.accelerator or 'accelerator'})"
    row.instances = res.nodes
    row.accelerators_per_instance = hw.accelerators_per_node
    row.on_demand_usd_hour = hw.usd_per_node_hour
    row.billed_on_demand_usd = row.billed_usd = hw.usd_per_node_hour * res.nodes * row.hours
    row.sources = [hw.breakdown(), sm.source]
    if spec.spot.is_spot:
        row.notes.append("owned nodes have no spot market: priced at the owned node-hour")
    return _total(row, org)


def _preemption(target: str, cloud: str, org: OrgParams) -> Preemption:
    base = PREEMPTION[cloud]
    over = org.preemption.get(target) or {}
    if not over:
        return base
    for k, v in over.items():
        if k not in ("mtbp_hours", "checkpoint_seconds", "restart_seconds"):
            raise UsageError(f"[cost.preemption.{target}]: unknown key '{k}'; expected mtbp_hours, checkpoint_seconds, restart_seconds")
        if not isinstance(v, (int, float)) or v <= 0:
            raise UsageError(f"[cost.preemption.{target}].{k} must be a positive number, got {v!r}")
    return Preemption(float(over.get("mtbp_hours", base.mtbp_hours)), float(over.get("checkpoint_seconds", base.checkpoint_seconds)),
                      float(over.get("restart_seconds", base.restart_seconds)), f"{org.source} [cost.preemption.{target}]")


def estimate(spec, targets: Optional[Sequence[str]] = None, org: Optional[OrgParams] = None) -> list[TargetCost]:
    """Cost rows for ``targets`` (default all of :data:`TARGETS`), the cheapest (lowest organisation
    total among available non-local targets) marked.

    When ``targets`` is given, a target that cannot be priced raises; by default it becomes an
    unavailable row with the reason.

    Raises:
        NoOffering, UsageError: exit 2.
    """
    from unijob.cost.config import load_org

    org = org or load_org()
    explicit = targets is not None
    known = list(TARGETS) + [t for t in org.self_managed if t not in TARGETS]
    names = list(targets) if explicit else known
    for t in names:
        if t not in known:
            import difflib

            close = difflib.get_close_matches(t, known, n=1)
            raise UsageError(f"unknown target '{t}'; expected one of {', '.join(known)}",
                             hint=f"did you mean '{close[0]}'?" if close else None)
    rows = []
    for t in names:
        try:
            rows.append(estimate_target(spec, t, org))
        except (NoOffering, UsageError) as e:
            if explicit:
                raise type(e)(f"{t}: {e.message}", hint=e.hint) if not isinstance(e, NoOffering) else NoOffering(f"{t}: {e.message}", e.offered, e.hint)
            rows.append(TargetCost(target=t, available=False, reason=e.message))
    priced = [r for r in rows if r.available and r.target != "local"]
    if not any(r.available for r in rows):
        raise NoOffering("no target can run this spec: " + "; ".join(f"{r.target}: {r.reason}" for r in rows))
    if priced:
        min(priced, key=lambda r: r.total_usd).cheapest = True
    return rows
