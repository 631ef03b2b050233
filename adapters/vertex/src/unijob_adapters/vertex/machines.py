"""Machine specs: accelerator + count (+ cpus/memory) -> Vertex ``MachineSpec`` through the
shared catalog (:func:`unijob.cost.catalog.instance_for`, family ``gcp``), with SpecErrors that
name the field and list what Vertex offers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from unijob.cost import catalog
from unijob.errors import SpecError

from unijob_adapters.vertex.tables import ACCELERATOR_TYPES


@dataclass(frozen=True)
class Machine:
    """A chosen machine: the ``MachineSpec`` dict (snake_case, proto-plus ready) and what the
    cost estimator needs."""

    machine_type: str
    accelerator: Optional[str]
    accelerator_count: int

    def spec(self) -> dict:
        out: dict = {"machine_type": self.machine_type}
        if self.accelerator:
            out["accelerator_type"] = ACCELERATOR_TYPES[self.accelerator]
            out["accelerator_count"] = self.accelerator_count
        return out


def choose(accelerator: Optional[str], instance_types: Mapping[str, str], *, cpus: Optional[float] = None,
           memory_gib: Optional[float] = None, loc: Sequence[str | int] = ("resources",)) -> Machine:
    """Pick the Vertex machine for ``accelerator`` (canonical ``TYPE:COUNT`` or ``None``).

    ``instance_types["vertex"]`` (or ``["gcp"]``) overrides the catalog's choice.

    Raises:
        SpecError: at ``loc + ("accelerator",)`` when Vertex has no such accelerator or no machine
            with that many per node (the message lists what is offered); at
            ``loc + ("instance_type", "vertex")`` when the override contradicts the accelerator.
    """
    acc, count = (accelerator.split(":")[0], int(accelerator.split(":")[1])) if accelerator else (None, 0)
    aloc = tuple(loc) + ("accelerator",)
    if acc and acc not in ACCELERATOR_TYPES:
        offered = list(ACCELERATOR_TYPES)
        close = difflib.get_close_matches(acc, offered, n=1)
        raise SpecError.at(aloc, f"Vertex AI offers no {acc} accelerator; accelerators offered: "
                                 + ", ".join(offered), close[0] if close else None)
    override = instance_types.get("vertex") or instance_types.get("gcp")
    if override:
        shape = catalog.shape("gcp", override)
        key = "vertex" if "vertex" in instance_types else "gcp"
        if shape is not None and acc and not override.startswith("n1-") and (
                shape.accelerator != acc or shape.accelerator_count != count):
            raise SpecError.at(tuple(loc) + ("instance_type", key),
                               f"{override} carries {shape.accelerator_count} x {shape.accelerator}, "
                               f"but the accelerator asked is {acc}:{count}")
        return Machine(override, acc, count)
    try:
        shape = catalog.instance_for("gcp", acc, count, cpus=cpus, memory_gib=memory_gib)
    except catalog.NoOffering as e:
        if acc and e.offered:
            msg = (f"Vertex AI has no machine with {count} x {acc} per node; per-node counts offered "
                   f"for {acc}: {', '.join(str(c) for c in e.offered)}")
            near = min(e.offered, key=lambda c: (abs(c - count), c))
            raise SpecError.at(aloc, msg, f"{acc}:{near}") from None
        raise SpecError.at(aloc, str(e)) from None
    return Machine(shape.instance_type, acc, count)
