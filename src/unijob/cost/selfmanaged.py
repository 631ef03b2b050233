"""Self-managed targets priced one way: ``kubernetes``, ``slurm`` and ``ray`` (and any target named
in ``[cost.self_managed.<target>]``).

A self-managed cluster costs its hardware plus a fixed yearly term (seed 000, section 5:
``C_self(u) = u / eta_s * r + T``). Its hardware is one of:

- **cloud VMs** (default): the catalog's VM price of the cloud the cluster runs in (``ec2``, ``gce``,
  ``azure-vm``), plus, for managed Kubernetes, the control-plane fee, which is charged per cluster
  whether or not any job runs, so it joins the fixed term: ``F = T + fee x 8760 x clusters``.
  Fees: EKS $0.10 per cluster-hour in standard support
  (https://aws.amazon.com/blogs/containers/amazon-eks-extended-support-for-kubernetes-versions-pricing/,
  read 2026-11-29); GKE $0.10 per cluster-hour (https://cloud.google.com/kubernetes-engine/pricing,
  read 2026-11-29; the free tier's $74.40/month credit covers one zonal cluster and is not counted);
  AKS Standard tier $0.10 per cluster-hour, Free tier $0 without an SLA
  (https://techcommunity.microsoft.com/t5/apps-on-azure-blog/aks-introduces-uptime-sla/ba-p/1350832,
  read 2026-11-29). Slurm and Ray on VMs pay no control-plane fee (their head node is one of the VMs
  you list, or set ``control_plane_usd_hour``).
- **owned hardware** (``hardware = "owned"``): USD per node-hour =
  ``(node_price_usd / years + power_kw x 8760 x usd_per_kwh x pue + colocation_usd_per_node_year) / 8760``,
  straight-line depreciation, power drawn all year (a node you own costs the same idle or busy; idle
  time is what ``eta_s`` accounts for).

Configuration, in ``unijob.toml``::

    [cost.self_managed.kubernetes]
    hardware = "cloud"           # or "owned"
    provider = "eks"             # eks | gke | aks (kubernetes); slurm/ray: cloud = "aws" | "gcp" | "azure"
    clusters = 1                 # control-plane fees paid per year
    control_plane_usd_hour = 0.10   # override the fee (e.g. 0 for AKS Free tier)

    [cost.self_managed.slurm]
    hardware = "owned"
    accelerator = "H100"
    accelerators_per_node = 8
    node_price_usd = 300000
    years = 4
    power_kw = 10.2
    usd_per_kwh = 0.12
    pue = 1.3
    colocation_usd_per_node_year = 12000
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from unijob.errors import UsageError

HOURS_PER_YEAR = 24 * 365

#: Targets priced as self-managed clusters (the rest of :data:`unijob.cost.estimate.TARGETS` are managed or local).
SELF_MANAGED: tuple[str, ...] = ("kubernetes", "slurm", "ray")

#: Managed Kubernetes control planes: provider -> (cloud, USD per cluster-hour, source).
CONTROL_PLANE: dict[str, tuple[str, float, str]] = {
    "eks": ("aws", 0.10, "EKS $0.10 per cluster-hour, standard support (https://aws.amazon.com/blogs/containers/"
                         "amazon-eks-extended-support-for-kubernetes-versions-pricing/, read 2026-11-29)"),
    "gke": ("gcp", 0.10, "GKE cluster management fee $0.10 per cluster-hour (https://cloud.google.com/kubernetes-engine/"
                         "pricing, read 2026-11-29)"),
    "aks": ("azure", 0.10, "AKS Standard tier $0.10 per cluster-hour (https://techcommunity.microsoft.com/t5/apps-on-azure-blog/"
                           "aks-introduces-uptime-sla/ba-p/1350832, read 2026-11-29)"),
}
_PROVIDER_OF = {"aws": "eks", "gcp": "gke", "azure": "aks"}
_CLOUD_KEYS = {"hardware", "provider", "cloud", "clusters", "control_plane_usd_hour"}
_OWNED_KEYS = {"hardware", "accelerator", "accelerators_per_node", "node_price_usd", "years", "power_kw",
               "usd_per_kwh", "pue", "colocation_usd_per_node_year"}


@dataclass(frozen=True)
class OwnedHardware:
    """Nodes you own. Money in USD, power in kW, energy price in USD per kWh."""

    accelerator: Optional[str]
    accelerators_per_node: int
    node_price_usd: float
    years: float
    power_kw: float
    usd_per_kwh: float
    pue: float
    colocation_usd_per_node_year: float

    @property
    def usd_per_node_year(self) -> float:
        """Depreciation + energy (x PUE) + colocation, USD per node per year."""
        return (self.node_price_usd / self.years + self.power_kw * HOURS_PER_YEAR * self.usd_per_kwh * self.pue
                + self.colocation_usd_per_node_year)

    @property
    def usd_per_node_hour(self) -> float:
        return self.usd_per_node_year / HOURS_PER_YEAR

    def breakdown(self) -> str:
        """One line: where the node-hour price comes from."""
        return (f"owned node: ${self.node_price_usd:,.0f} / {self.years:g} y + {self.power_kw:g} kW x 8760 h x "
                f"${self.usd_per_kwh:g}/kWh x PUE {self.pue:g} + colocation ${self.colocation_usd_per_node_year:,.0f}/y "
                f"= ${self.usd_per_node_year:,.0f}/node-year = ${self.usd_per_node_hour:,.3f}/node-hour")


@dataclass(frozen=True)
class SelfManaged:
    """How one self-managed target is priced.

    Attributes:
        target: the target name. hardware: ``"cloud"`` or ``"owned"``.
        cloud: aws/gcp/azure for cloud VMs (None for owned). provider: eks/gke/aks or ``"vm"``.
        control_plane_usd_hour: fee per cluster-hour; clusters: how many are paid for.
        owned: the owned-node figures (hardware ``"owned"``).
        source: where the fee or the owned figures come from.
    """

    target: str
    hardware: str
    cloud: Optional[str]
    provider: str
    control_plane_usd_hour: float = 0.0
    clusters: int = 1
    owned: Optional[OwnedHardware] = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def control_plane_usd_year(self) -> float:
        """The control-plane fees per year, USD (part of the fixed term)."""
        return self.control_plane_usd_hour * HOURS_PER_YEAR * self.clusters

    def fixed_usd_year(self, team_cost: float) -> float:
        """F = T + control-plane fees per year: what a self-managed cluster costs before any job runs."""
        return team_cost + self.control_plane_usd_year


def _num(path: str, key: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise UsageError(f"{path}.{key} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


def _check_keys(path: str, table: dict, allowed: set[str]) -> None:
    import difflib

    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(k, sorted(allowed), n=1)
            raise UsageError(f"{path}: unknown key '{k}'" + (f" (did you mean '{close[0]}'?)" if close
                                                              else f"; known: {', '.join(sorted(allowed))}"))


def resolve(target: str, config: Optional[dict] = None, opts: Optional[dict] = None,
            default_cloud: Optional[str] = None) -> SelfManaged:
    """The pricing of self-managed ``target`` from its ``[cost.self_managed.<target>]`` table
    (``config``) and the spec's ``targets.<target>`` options (``opts``: ``provider`` for kubernetes,
    ``cloud`` for others).

    ``default_cloud`` is the cloud assumed when neither says (the break-even passes the managed
    target's cloud so both sides are priced in the same cloud); else aws.

    Raises:
        UsageError: an unknown key, a bad number, an unknown provider or cloud (exit 2).
    """
    from unijob.accelerators import AcceleratorError, canonical

    cfg = dict(config or {})
    opts = dict(opts or {})
    path = f"[cost.self_managed.{target}]"
    hardware = str(cfg.get("hardware") or "cloud").lower()
    if hardware == "owned":
        _check_keys(path, cfg, _OWNED_KEYS)
        need = ("accelerators_per_node", "node_price_usd", "years", "power_kw", "usd_per_kwh")
        missing = [k for k in need if k not in cfg]
        if missing:
            raise UsageError(f"{path}: hardware = \"owned\" needs {', '.join(missing)}")
        acc = cfg.get("accelerator")
        if acc is not None:
            try:
                acc = canonical(str(acc))
            except AcceleratorError as e:
                raise UsageError(f"{path}.accelerator: {e}") from None
        n = cfg["accelerators_per_node"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UsageError(f"{path}.accelerators_per_node must be a whole number >= 0, got {n!r}")
        pue = _num(path, "pue", cfg.get("pue", 1.0))
        if pue < 1:
            raise UsageError(f"{path}.pue must be >= 1 (total facility power / IT power), got {pue!r}")
        owned = OwnedHardware(acc, n, _num(path, "node_price_usd", cfg["node_price_usd"]),
                              _num(path, "years", cfg["years"]), _num(path, "power_kw", cfg["power_kw"], positive=False),
                              _num(path, "usd_per_kwh", cfg["usd_per_kwh"], positive=False), pue,
                              _num(path, "colocation_usd_per_node_year", cfg.get("colocation_usd_per_node_year", 0),
                                   positive=False))
        return SelfManaged(target, "owned", None, "owned", 0.0, 1, owned, f"unijob.toml {path} (your figures)")
    if hardware != "cloud":
        raise UsageError(f"{path}.hardware must be \"cloud\" or \"owned\", got {hardware!r}")
    _check_keys(path, cfg, _CLOUD_KEYS)
    clusters = cfg.get("clusters", 1)
    if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 0:
        raise UsageError(f"{path}.clusters must be a whole number >= 0, got {clusters!r}")
    if target == "kubernetes":
        prov = str(opts.get("provider") or cfg.get("provider") or _PROVIDER_OF.get(default_cloud or "aws")).lower()
        if prov not in CONTROL_PLANE:
            raise UsageError(f"kubernetes provider must be eks, gke or aks to be priced, got '{prov}'",
                             hint="set targets.kubernetes.provider or [cost.self_managed.kubernetes] provider")
        cloud, fee, src = CONTROL_PLANE[prov]
    else:
        cloud = str(opts.get("cloud") or cfg.get("cloud") or default_cloud or "aws").lower()
        if cloud not in _PROVIDER_OF:
            raise UsageError(f"{target}: cloud must be aws, gcp or azure to be priced, got '{cloud}'")
        prov, fee, src = "vm", 0.0, f"{target} on {cloud} VMs: no control-plane fee"
    if "control_plane_usd_hour" in cfg:
        fee = _num(path, "control_plane_usd_hour", cfg["control_plane_usd_hour"], positive=False)
        src = f"unijob.toml {path} control_plane_usd_hour"
    return SelfManaged(target, "cloud", cloud, prov, fee, clusters, None, src)


def for_target(target: str, org, opts: Optional[dict] = None, default_cloud: Optional[str] = None) -> SelfManaged:
    """:func:`resolve` with the organisation's ``[cost.self_managed.<target>]`` table."""
    return resolve(target, (getattr(org, "self_managed", None) or {}).get(target), opts, default_cloud)


def is_self_managed(target: str, org=None) -> bool:
    """``kubernetes``, ``slurm``, ``ray``, or a target the organisation configured as self-managed."""
    return target in SELF_MANAGED or target in ((getattr(org, "self_managed", None) or {}) if org else {})
