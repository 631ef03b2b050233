"""``--target auto``: the cheapest ready target for a spec, by the organisation's total cost.

The self-managed ``kubernetes`` target is charged its hardware / eta_s plus the platform team's
share T/u per useful accelerator-hour; managed targets their billed price / eta_m (seed 000,
section 5). So a team whose useful hours u are below the break-even u* is sent to a managed target
and a team above it to its own cluster. ``local`` is chosen only when it is the sole candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from unijob.cost.config import OrgParams
from unijob.errors import UsageError


@dataclass
class AutoChoice:
    """The chosen target, two or three lines of reasons for people, and each candidate's total (USD)."""

    target: str
    reasons: list[str] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)


def choose_target(spec, candidates: list[str], org: Optional[OrgParams] = None) -> AutoChoice:
    """The cheapest target among ``candidates`` (ready targets) for ``spec``.

    Raises:
        UsageError: no candidates, or none of them can be priced for this spec (exit 2).
    """
    from unijob.cost.config import load_org
    from unijob.cost.estimate import TARGETS, estimate

    org = org or load_org()
    if not candidates:
        raise UsageError("--target auto: no ready target to choose from")
    known = [c for c in candidates if c in TARGETS]
    if not known:
        raise UsageError(f"--target auto: cannot price any of {', '.join(candidates)}")
    if known == ["local"]:
        return AutoChoice("local", ["local is the only ready target"], {"local": 0.0})
    rows = [r for r in estimate(spec, None, org) if r.target in known and r.target != "local"]
    skipped = [r for r in rows if not r.available]
    usable = [r for r in rows if r.available]
    if not org.useful_hours and any(r.target == "kubernetes" for r in usable) and len(usable) > 1:
        usable = [r for r in usable if r.target != "kubernetes"]
        skipped_k8s = "kubernetes not considered: set useful_hours (u) so its platform-team share T/u can be charged"
    else:
        skipped_k8s = ""
    if not usable:
        raise UsageError("--target auto: no ready target can run this spec: "
                         + "; ".join(f"{r.target}: {r.reason}" for r in skipped))
    best = min(usable, key=lambda r: r.total_usd)
    costs = {r.target: round(r.total_usd, 2) for r in usable}
    ranking = ", ".join(f"{r.target} ${r.total_usd:,.0f}" for r in sorted(usable, key=lambda r: r.total_usd))
    reasons = [f"{best.target} is cheapest for this job: {ranking} "
               f"({best.instances} x {best.instance_type}, {best.hours:g} h, {best.policy})"]
    k8s = next((r for r in usable if r.target == "kubernetes"), None)
    if k8s is not None and org.useful_hours:
        mgd = [r for r in usable if r.target != "kubernetes"]
        line = (f"kubernetes is charged hardware / eta_s ({org.eta_s:g}) + the platform team's T/u = "
                f"${org.T / org.useful_hours:,.2f} per useful accelerator-hour (u = {org.useful_hours:,.0f}/yr)")
        if mgd:
            m = min(mgd, key=lambda r: r.total_usd)
            u_cross = _crossover(k8s, m, org)
            if u_cross is None:
                line += f"; {m.target} wins at every u"
            else:
                line += f"; it beats {m.target} above u* = {u_cross:,.0f} useful acc-h/yr, you are " + \
                        ("above" if org.useful_hours > u_cross else "below")
        reasons.append(line)
    elif skipped_k8s:
        reasons.append(skipped_k8s)
    if skipped:
        reasons.append("not offered: " + "; ".join(f"{r.target} ({r.reason})" for r in skipped))
    return AutoChoice(best.target, reasons[:3], costs)


def _crossover(k8s, managed, org: OrgParams) -> Optional[float]:
    """The u at which kubernetes' total equals ``managed``'s for this job (None: managed always wins)."""
    acc_hours = k8s.instances * max(k8s.accelerators_per_instance, 1) * k8s.hours
    hw = k8s.billed_usd / org.eta_s
    gap = managed.total_usd - hw
    if gap <= 0:
        return None
    return acc_hours * org.T / gap
