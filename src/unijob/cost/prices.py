"""The dated price catalog: ``data/prices.csv`` and ``data/databricks.csv`` (stdlib ``csv``, parsed
once per process on first use; no pandas).

Each row carries its ``source`` (URL or vendor API and query, or the rule it was derived by),
``as_of`` (the date it was read) and, for the on-demand and the spot figure separately, its ``basis``:
``published`` (read on the vendor's page or price API), ``derived`` (computed from another row by the
rule in ``source``) or ``assumption`` (not verified). Derived and assumed figures are estimates, and
``unijob cost`` marks them so. ``unijob catalog refresh`` writes
fresher rows to the user's price file (:func:`user_prices_path`), which overlays the shipped ones.

Services (the ``service`` column): ``sagemaker-training``, ``sagemaker-hosting``, ``ec2``, ``gce``,
``vertex-training``, ``azure-vm``. Units: USD per instance-hour (Linux, list price). For
``vertex-training`` and ``gce`` an ``n1-*`` row is the machine alone and ``gpu:TYPE`` rows are per
attached GPU; ``a2``/``a3``/``g2`` rows include their GPUs.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional

from unijob.cost.catalog import NoOffering

FIELDS = ("service", "region", "instance_type", "on_demand_usd_hour", "spot_usd_hour", "basis", "spot_basis",
          "source", "as_of")

#: The values of the ``basis`` / ``spot_basis`` columns; all but ``published`` are estimates.
BASES = ("published", "derived", "assumption")


@dataclass(frozen=True)
class Price:
    """One price row: USD per instance-hour on-demand and spot (``None`` when not priced)."""

    service: str
    region: str
    instance_type: str
    on_demand: float
    spot: Optional[float]
    source: str
    as_of: str
    basis: str = "published"
    spot_basis: str = ""

    @property
    def estimate(self) -> bool:
        """The on-demand figure rests on a derivation or an assumption, not a published price."""
        return self.basis != "published"

    @property
    def spot_estimate(self) -> bool:
        """The spot figure (when there is one) rests on a derivation or an assumption."""
        return self.spot is not None and self.spot_basis != "published"


def _infer_basis(source: str) -> str:
    s = source.strip().lower()
    if s.startswith(("assumption", "unverified")):
        return "assumption"
    if s.startswith("derived"):
        return "derived"
    return "published"


def _lines(text: str) -> Iterable[str]:
    return (ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))


def user_prices_path() -> Path:
    """Where ``unijob catalog refresh`` writes: ``$UNIJOB_HOME/prices.csv`` (default: the per-user
    data dir, ``platformdirs.user_data_dir("unijob")``)."""
    home = os.environ.get("UNIJOB_HOME")
    if not home:
        import platformdirs

        home = platformdirs.user_data_dir("unijob")
    return Path(home) / "prices.csv"


def parse_prices(text: str) -> list[Price]:
    """Rows of a prices CSV (``#`` comment lines allowed)."""
    out = []
    for row in csv.DictReader(_lines(text)):
        spot = row.get("spot_usd_hour") or ""
        source = row.get("source") or ""
        basis = (row.get("basis") or "").strip() or _infer_basis(source)
        spot_basis = (row.get("spot_basis") or "").strip() or ("assumption" if spot else "")
        if basis not in BASES or (spot_basis and spot_basis not in BASES):
            raise ValueError(f"prices row {row['service']}/{row['region']}/{row['instance_type']}: basis must be one of "
                             f"{', '.join(BASES)}, got {basis!r}/{spot_basis!r}")
        out.append(Price(row["service"], row["region"], row["instance_type"], float(row["on_demand_usd_hour"]),
                         float(spot) if spot else None, source, row.get("as_of", ""), basis, spot_basis))
    return out


@functools.lru_cache(maxsize=None)
def prices() -> dict[tuple[str, str, str], Price]:
    """(service, region, instance_type) -> Price: the shipped rows, overlaid by the user's refreshed rows."""
    text = resources.files("unijob.cost").joinpath("data", "prices.csv").read_text(encoding="utf-8")
    table = {(p.service, p.region, p.instance_type): p for p in parse_prices(text)}
    user = user_prices_path()
    if user.is_file():
        for p in parse_prices(user.read_text(encoding="utf-8")):
            old = table.get((p.service, p.region, p.instance_type))
            if p.spot is None and old is not None and old.spot is not None:
                # a refreshed on-demand price keeps the shipped spot discount (spot moves every 5 min)
                p = replace(p, spot=round(old.spot / old.on_demand * p.on_demand, 6), spot_basis="derived",
                            source=p.source + f"; spot derived: the shipped row's spot/on-demand ratio "
                                              f"{old.spot / old.on_demand:.4f}")
            table[(p.service, p.region, p.instance_type)] = p
    return table


def regions(service: str) -> list[str]:
    """Regions priced for ``service``."""
    return sorted({k[1] for k in prices() if k[0] == service})


def price(service: str, region: str, instance_type: str) -> Price:
    """The price row of ``instance_type`` in ``region``.

    Raises:
        NoOffering: no such row (exit 2); the message lists where that instance is priced.
    """
    p = prices().get((service, region, instance_type))
    if p is not None:
        return p
    where = sorted(k[1] for k in prices() if k[0] == service and k[2] == instance_type)
    if where:
        raise NoOffering(f"{instance_type} has no {service} price in region '{region}'; priced in: {', '.join(where)}")
    known = regions(service)
    if region not in known:
        raise NoOffering(f"no {service} prices for region '{region}'; priced regions: {', '.join(known)}")
    raise NoOffering(f"no {service} price for instance type '{instance_type}' in {region}",
                     hint="set a known instance type, or run `unijob catalog refresh`")


@dataclass(frozen=True)
class DatabricksRates:
    """USD per DBU by (cloud, compute type) and DBUs per hour by (cloud, instance type)."""

    usd_per_dbu: dict[tuple[str, str], float]
    dbu_per_hour: dict[tuple[str, str], float]
    sources: dict[tuple[str, str, str], str]

    def estimate(self, kind: str, cloud: str, key: str) -> bool:
        """Whether the shipped ``kind`` (rate/node) row rests on an assumption."""
        return self.sources.get((kind, cloud, key), "assumption").lower().startswith("assumption")


@functools.lru_cache(maxsize=None)
def databricks() -> DatabricksRates:
    """The shipped Databricks DBU rates and node DBU/h (``data/databricks.csv``)."""
    text = resources.files("unijob.cost").joinpath("data", "databricks.csv").read_text(encoding="utf-8")
    rates: dict[tuple[str, str], float] = {}
    nodes: dict[tuple[str, str], float] = {}
    sources: dict[tuple[str, str, str], str] = {}
    for row in csv.DictReader(_lines(text)):
        key = (row["cloud"], row["key"])
        (rates if row["kind"] == "rate" else nodes)[key] = float(row["value"])
        sources[(row["kind"], row["cloud"], row["key"])] = f"{row['source']} ({row['as_of']})"
    return DatabricksRates(rates, nodes, sources)
