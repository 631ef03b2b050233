"""The catalog: instance shapes (and, in ``prices.csv``, dated prices) shipped with unijob.

This is the one accelerator-to-instance table: adapters choose instance types through
:func:`instance_for`, and the cost estimator prices the same rows, so a plan and its price never
disagree.

Families: ``sagemaker`` (``ml.*`` types, SageMaker training and hosting), ``ec2`` (EKS,
Databricks on AWS), ``gcp`` (Vertex AI, GKE, Databricks on GCP), ``azure`` (Databricks on Azure).
Sources are in the header of ``data/instances.csv``.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Optional

from unijob.errors import UnijobError


class NoOffering(UnijobError):
    """No instance of that family carries the accelerator type and count asked for. Exit 2.

    Attributes:
        offered: for the accelerator type, the per-instance counts that do exist.
    """

    exit_code = 2

    def __init__(self, message: str, offered: list[int] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.offered = offered or []


@dataclass(frozen=True)
class Shape:
    """One instance type: ``accelerator`` x ``accelerator_count`` (0 for CPU), vCPUs, memory (GiB)."""

    family: str
    instance_type: str
    accelerator: Optional[str]
    accelerator_count: int
    vcpus: float
    memory_gib: float


def _data_lines(name: str) -> Iterable[str]:
    text = resources.files("unijob.cost").joinpath("data", name).read_text(encoding="utf-8")
    return (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


@functools.lru_cache(maxsize=None)
def shapes() -> tuple[Shape, ...]:
    """Every instance shape in the catalog (parsed once per process)."""
    out = []
    for row in csv.DictReader(_data_lines("instances.csv")):
        out.append(Shape(row["family"], row["instance_type"], row["accelerator"] or None,
                         int(row["accelerator_count"]), float(row["vcpus"]), float(row["memory_gib"])))
    return tuple(out)


def shape(family: str, instance_type: str) -> Optional[Shape]:
    """The shape of ``instance_type`` in ``family`` (the first match), or ``None``."""
    for s in shapes():
        if s.family == family and s.instance_type == instance_type:
            return s
    return None


def instance_for(family: str, accelerator: Optional[str], count: int = 0, *,
                 cpus: Optional[float] = None, memory_gib: Optional[float] = None) -> Shape:
    """The smallest instance of ``family`` with exactly ``count`` x ``accelerator`` per node and at
    least ``cpus`` vCPUs and ``memory_gib`` GiB.

    For CPU jobs (``accelerator`` None) the smallest CPU shape meeting the minima, default the
    4-vCPU general-purpose one when no minima are given.

    Raises:
        NoOffering: the family has no such accelerator, or not that many per instance (the message
            lists what it has), or none big enough.
    """
    fam = [s for s in shapes() if s.family == family]
    if not fam:
        raise NoOffering(f"unknown instance family '{family}'")
    if accelerator is None:
        cands = [s for s in fam if s.accelerator is None]
        need_cpu = cpus if cpus is not None else (4 if memory_gib is None else 0)
    else:
        typed = [s for s in fam if s.accelerator == accelerator]
        if not typed:
            have = sorted({s.accelerator for s in fam if s.accelerator})
            raise NoOffering(f"{family} offers no {accelerator} instances; accelerators offered: {', '.join(have)}")
        cands = [s for s in typed if s.accelerator_count == count]
        if not cands:
            offered = sorted({s.accelerator_count for s in typed})
            raise NoOffering(
                f"{family} has no instance with {count} x {accelerator}; per-instance counts offered: "
                + ", ".join(str(c) for c in offered), offered)
        need_cpu = cpus or 0
    fit = [s for s in cands if s.vcpus >= (need_cpu or 0) and s.memory_gib >= (memory_gib or 0)]
    if not fit:
        biggest = max(cands, key=lambda s: (s.vcpus, s.memory_gib))
        raise NoOffering(
            f"no {family} instance with {accelerator or 'no accelerator'}"
            f"{':' + str(count) if accelerator else ''} has {cpus or 0:g} vCPUs and {memory_gib or 0:g} GiB; "
            f"the largest is {biggest.instance_type} ({biggest.vcpus:g} vCPUs, {biggest.memory_gib:g} GiB)")
    return min(fit, key=lambda s: (s.vcpus, s.memory_gib, s.instance_type))
