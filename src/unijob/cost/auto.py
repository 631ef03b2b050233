"""``--target auto``: the cheapest installed, ready target that can run a spec, by the organisation's
total cost.

Candidates are the installed adapters (:func:`unijob.registry.names`). One is skipped, with the reason
said, when its ``check(spec)`` is not ready, its ``plan`` rejects the spec, the catalog has no
instance for it, it has no price model, or (``local``) this machine lacks the accelerators the spec
asks for. Among the rest, managed targets are charged their billed price / eta_m and self-managed ones
(``kubernetes``, ``slurm``, ``ray``: :mod:`unijob.cost.selfmanaged`) their hardware / eta_s plus the
fixed term's share F/u per useful accelerator-hour (seed 000, section 5), so a team whose useful hours
u are below the break-even u* is sent to a managed target and a team above it to its own cluster;
the u* printed is :func:`unijob.cost.breakeven.params_from_rows`', the one ``unijob breakeven``
prints. ``local`` is chosen only when it is the sole target that can run the spec. When none can:
:class:`unijob.errors.NotReady` (exit 3) with every target and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from unijob.cost.config import OrgParams
from unijob.errors import NotReady, UnijobError


@dataclass
class AutoChoice:
    """The chosen target, lines of reasons for people, each candidate's total (USD), and the
    skipped targets with why."""

    target: str
    reasons: list[str] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def local_gpus() -> int:
    """NVIDIA GPUs on this machine, from ``/proc/driver/nvidia/gpus`` (0 when there is no driver)."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def _probe(name: str, spec) -> Optional[str]:
    """Why installed target ``name`` cannot run ``spec`` now, or None when it can."""
    from unijob import registry

    try:
        adapter = registry.get(name)
        ready = adapter.check(spec)
    except UnijobError as e:
        return e.message
    except Exception as e:  # a broken adapter is simply not a candidate
        return f"{e.__class__.__name__}: {e}"
    if not ready.ready:
        return "not ready: " + "; ".join(ready.problems or ["check() said not ready"])
    if name == "local":
        res = spec.resources
        if res.accelerator_type is not None:
            have, need = local_gpus(), res.nodes * res.accelerator_count
            if have < need:
                return (f"this machine has {have} GPU{'s' if have != 1 else ''}; the spec asks for "
                        f"{res.nodes} x {res.accelerator_type}:{res.accelerator_count}")
    try:
        adapter.plan(spec, "auto-probe")
    except UnijobError as e:
        return "cannot plan this spec: " + e.message.splitlines()[0]
    except Exception as e:
        return f"cannot plan this spec: {e.__class__.__name__}: {e}"
    return None


def candidates(spec) -> tuple[list[str], dict[str, str]]:
    """(installed targets that can run ``spec``, {skipped target: reason})."""
    from unijob import registry

    ok, skipped = [], {}
    for name in registry.names():
        why = _probe(name, spec)
        if why is None:
            ok.append(name)
        else:
            skipped[name] = why
    return ok, skipped


def choose_target(spec, candidates_: Optional[list[str]] = None, org: Optional[OrgParams] = None,
                  skipped: Optional[dict[str, str]] = None) -> AutoChoice:
    """The cheapest target for ``spec`` among ``candidates_`` (default: :func:`candidates`, the
    installed targets that are ready and can run it).

    Raises:
        NotReady: no target can run the spec; the message lists each and why (exit 3).
    """
    from unijob.cost import selfmanaged
    from unijob.cost.breakeven import params_from_rows, u_star
    from unijob.cost.catalog import NoOffering
    from unijob.cost.config import load_org
    from unijob.cost.estimate import TARGETS, estimate_target
    from unijob.errors import UsageError

    org = org or load_org()
    skipped = dict(skipped or {})
    if candidates_ is None:
        candidates_, found = candidates(spec)
        skipped.update(found)
    rows = []
    for name in candidates_:
        if name == "local":
            continue
        if name not in TARGETS and not selfmanaged.is_self_managed(name, org):
            skipped[name] = "no price model (not in the catalog; self-managed ones: [cost.self_managed.<target>])"
            continue
        try:
            rows.append(estimate_target(spec, name, org))
        except (NoOffering, UsageError) as e:
            skipped[name] = e.message
    usable = list(rows)
    if not org.useful_hours and len(usable) > 1 and any(not r.self_managed for r in usable):
        for r in [r for r in usable if r.self_managed]:
            skipped[r.target] = "self-managed, and useful_hours (u) is unknown: its fixed share F/u cannot be charged"
            usable.remove(r)
    skip_line = ("skipped: " + "; ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))) if skipped else ""
    if not usable:
        if "local" in candidates_:
            return AutoChoice("local", ["local is the only target that can run this spec"]
                              + ([skip_line] if skip_line else []), {"local": 0.0}, skipped)
        raise NotReady("--target auto: no installed, ready target can run this spec:\n  "
                       + "\n  ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
                       if skipped else "--target auto: no target is installed",
                       hint="install a target (pip install 'unijob[sagemaker]', ...) or fix what `unijob doctor` reports")
    best = min(usable, key=lambda r: r.total_usd)
    costs = {r.target: round(r.total_usd, 2) for r in usable}
    ranking = ", ".join(f"{r.target} ${r.total_usd:,.0f}" for r in sorted(usable, key=lambda r: r.total_usd))
    reasons = [f"{best.target} is cheapest for this job: {ranking} "
               f"({best.instances} x {best.instance_type}, {best.hours:g} h, {best.policy})"]
    own = min((r for r in usable if r.self_managed), key=lambda r: r.total_usd, default=None)
    mgd = min((r for r in usable if not r.self_managed), key=lambda r: r.total_usd, default=None)
    if own is not None and org.useful_hours:
        line = (f"{own.target} is charged hardware / eta_s ({org.eta_s:g}) + F/u = "
                f"${own.fixed_usd_year / org.useful_hours:,.2f} per useful accelerator-hour "
                f"(F = ${own.fixed_usd_year:,.0f}/yr, u = {org.useful_hours:,.0f}/yr)")
        if mgd is not None:
            us = u_star(params_from_rows(own, mgd, org.eta_s, org.eta_m))
            if us is None:
                line += f"; {mgd.target} wins at every u"
            else:
                line += (f"; it beats {mgd.target} above u* = {us:,.0f} useful acc-h/yr, you are "
                         + ("above" if org.useful_hours > us else "below"))
                res = spec.resources
                if (res.accelerator_type and own.region == mgd.region
                        and (mgd.target != "databricks" or res.nodes == 1)):  # the same figures, one node
                    line += (f" (unijob breakeven --accelerator {res.accelerator_type}:{res.accelerator_count} "
                             f"--managed {mgd.target} --self {own.target} --region {mgd.region})")
        reasons.append(line)
    if skip_line:
        reasons.append(skip_line)
    return AutoChoice(best.target, reasons, costs, skipped)


def crossover(spec, self_target: str, managed: str, org: Optional[OrgParams] = None) -> Optional[float]:
    """u* between ``self_target`` and ``managed`` for ``spec`` (what ``--target auto`` prints)."""
    from unijob.cost.breakeven import params_from_rows, u_star
    from unijob.cost.config import load_org
    from unijob.cost.estimate import estimate_target

    org = org or load_org()
    s, m = estimate_target(spec, self_target, org), estimate_target(spec, managed, org)
    return u_star(params_from_rows(s, m, org.eta_s, org.eta_m))
