"""Organisation parameters for cost estimates, the break-even and ``--target auto``.

Read from the first of these found walking up from the current directory:

- ``unijob.toml``: the ``[cost]`` table;
- ``pyproject.toml``: the ``[tool.unijob.cost]`` table (a ``pyproject.toml`` without it is skipped).

Every key is optional; command-line flags override the file, the file overrides the defaults.
Example::

    [cost]
    raw_hour = 12.0          # r, USD per raw accelerator-hour
    salary = 220000          # fully-loaded USD per platform engineer per year
    team_size = 2            # T = salary x team_size (or give team_cost directly)
    eta_s = 0.55             # self-managed utilization
    eta_m = 0.80             # managed utilization
    markup = 1.6             # managed USD/h = markup x raw (break-even only; estimates use catalog prices)
    useful_hours = 150000    # u, useful accelerator-hours per year
    [cost.regions]
    aws = "us-east-1"
    gcp = "us-central1"
    azure = "eastus"
    [cost.databricks]
    discount = 0.2           # account discount on DBUs (0.2 = 20% off list)
    usd_per_dbu = { jobs_compute = 0.12 }
    dbu_per_hour = { "g5.2xlarge" = 1.5 }
    compute_type = "jobs_compute"
    [cost.preemption.sagemaker]
    mtbp_hours = 10          # mean time between preemptions of one node (hours)
    checkpoint_seconds = 60  # C: time to write one checkpoint
    restart_seconds = 600    # R: time from preemption to training again
    [cost.self_managed.kubernetes]   # how kubernetes, slurm, ray are priced: see unijob.cost.selfmanaged
    hardware = "cloud"       # cloud VMs + the EKS/GKE/AKS control-plane fee, or "owned" nodes

Defaults: the seed's parameters (seed 000, section 5, Code 33.9.3): r = 12, salary 220,000 x 2,
eta_s = 0.55, m = 1.6, eta_m = 0.80; regions us-east-1, us-central1, eastus.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from unijob.errors import UsageError

#: The seed's organisation (seed 000, section 5, Code 33.9.3).
SEED_DEFAULTS: dict[str, float] = {"raw_hour": 12.0, "salary": 220_000.0, "team_size": 2.0,
                                   "eta_s": 0.55, "markup": 1.6, "eta_m": 0.80}

DEFAULT_REGIONS: dict[str, str] = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}

_KEYS = {"raw_hour", "salary", "team_size", "team_cost", "eta_s", "eta_m", "markup", "useful_hours",
         "regions", "databricks", "preemption",
         "self_managed"}
_TABLES = ("regions", "databricks", "preemption", "self_managed")


@dataclass
class OrgParams:
    """Organisation parameters (units: USD, USD/hour, fractions, accelerator-hours per year).

    Attributes:
        raw_hour: r. salary, team_size, team_cost: T = team_cost, else salary x team_size.
        eta_s, eta_m: utilizations in (0, 1]. markup: m. useful_hours: u (None = unknown).
        regions: cloud -> region (aws, gcp, azure).
        databricks: ``discount`` (fraction), ``usd_per_dbu`` {compute type: USD}, ``dbu_per_hour``
            {instance type: DBU/h}, ``compute_type`` (default ``jobs_compute``).
        preemption: target -> {mtbp_hours, checkpoint_seconds, restart_seconds} overrides.
        self_managed: target -> its ``[cost.self_managed.<target>]`` table (:mod:`unijob.cost.selfmanaged`).
        source: the file the values came from, or ``"defaults"``.
    """

    raw_hour: float = SEED_DEFAULTS["raw_hour"]
    salary: Optional[float] = SEED_DEFAULTS["salary"]
    team_size: Optional[float] = SEED_DEFAULTS["team_size"]
    team_cost: Optional[float] = None
    eta_s: float = SEED_DEFAULTS["eta_s"]
    eta_m: float = SEED_DEFAULTS["eta_m"]
    markup: float = SEED_DEFAULTS["markup"]
    useful_hours: Optional[float] = None
    regions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REGIONS))
    databricks: dict[str, Any] = field(default_factory=dict)
    preemption: dict[str, dict[str, float]] = field(default_factory=dict)
    self_managed: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"

    @property
    def T(self) -> float:
        """The platform team's annual cost, USD per year."""
        if self.team_cost is not None:
            return float(self.team_cost)
        return float(self.salary or 0) * float(self.team_size or 0)

    def breakeven_params(self):
        """These parameters as :class:`unijob.cost.breakeven.BreakEvenParams` (validated).

        Raises:
            UsageError: a zero/negative parameter or a utilization outside (0, 1].
        """
        from unijob.cost.breakeven import BreakEvenParams

        if self.team_cost is not None:
            return BreakEvenParams(self.raw_hour, self.team_cost, self.eta_s, self.markup, self.eta_m).validated()
        if self.salary is None or self.team_size is None:
            raise UsageError("the platform team cost is missing: give --team-cost, or --salary and --team-size")
        return BreakEvenParams.from_team(self.raw_hour, self.salary, self.team_size, self.eta_s, self.markup, self.eta_m)

    def with_overrides(self, **flags: Any) -> "OrgParams":
        """A copy with every non-None flag applied (flags beat the file). Giving ``team_cost``
        drops salary x size; giving ``salary`` or ``team_size`` drops a file's ``team_cost``."""
        upd = {k: v for k, v in flags.items() if v is not None}
        if "team_cost" in upd:
            upd.setdefault("salary", None)
            upd.setdefault("team_size", None)
        elif "salary" in upd or "team_size" in upd:
            upd["team_cost"] = None
        return replace(self, **upd)


def _read_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError(f"cannot read {path}: Python 3.10 needs the 'tomli' package to read TOML",
                             hint="pip install tomli") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML: {e}") from None


def find_config(start: Optional[Path] = None) -> tuple[Optional[Path], dict]:
    """The nearest config from ``start`` (default cwd) upward and its cost table (``{}`` if none)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        u = d / "unijob.toml"
        if u.is_file():
            return u, dict(_read_toml(u).get("cost") or {})
        pp = d / "pyproject.toml"
        if pp.is_file():
            data = _read_toml(pp).get("tool", {}).get("unijob")
            if data is not None:
                return pp, dict(data.get("cost") or {})
    return None, {}


def load_org(start: Optional[Path] = None) -> OrgParams:
    """Organisation parameters from the nearest config file over the seed's defaults.

    Raises:
        UsageError: unknown keys (with a close match), wrong types, invalid TOML.
    """
    import difflib

    path, table = find_config(start)
    org = OrgParams()
    if path is None:
        return org
    for key, value in table.items():
        if key not in _KEYS:
            close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            raise UsageError(f"{path}: unknown cost parameter '{key}'"
                             + (f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(sorted(_KEYS))}"))
        if key in _TABLES:
            if not isinstance(value, dict):
                raise UsageError(f"{path}: [cost.{key}] must be a table")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{path}: cost.{key} must be a number, got {value!r}")
    regions = dict(DEFAULT_REGIONS)
    regions.update(table.get("regions") or {})
    values = {k: float(v) for k, v in table.items() if k not in _TABLES}
    org = org.with_overrides(**values)
    sm = dict(table.get("self_managed") or {})
    for name, sub in sm.items():
        if not isinstance(sub, dict):
            raise UsageError(f"{path}: [cost.self_managed.{name}] must be a table")
    org = replace(org, regions=regions, databricks=dict(table.get("databricks") or {}),
                  preemption=dict(table.get("preemption") or {}), self_managed=sm, source=str(path))
    from unijob.cost import selfmanaged

    for name, sub in sm.items():  # fail early, with the file named
        try:
            selfmanaged.resolve(name, sub)
        except UsageError as e:
            raise UsageError(f"{path}: {e.message}", hint=e.hint) from None
    return org
