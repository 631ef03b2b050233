"""Accelerator names: the canonical set, the common aliases, and ``TYPE[:COUNT]`` parsing.

Canonical names follow the marketing names SkyPilot and the clouds' price lists use
(``H100``, ``A100-80GB``, ``L4``...). Aliases cover the spellings users paste from the clouds:
GKE/Vertex (``nvidia-tesla-t4``, ``NVIDIA_TESLA_A100``), the GPU feature-discovery product
labels (``NVIDIA-A100-SXM4-80GB``) and SkyPilot (``A100-80GB``).

Memory per accelerator is in GiB, from the vendors' data sheets (NVIDIA, 2024).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

#: canonical name -> (memory per accelerator in GiB, one-line description)
ACCELERATORS: dict[str, tuple[int, str]] = {
    "H200": (141, "NVIDIA H200 141GB (Hopper)"),
    "H100": (80, "NVIDIA H100 80GB (Hopper)"),
    "A100-80GB": (80, "NVIDIA A100 80GB (Ampere)"),
    "A100": (40, "NVIDIA A100 40GB (Ampere)"),
    "L40S": (48, "NVIDIA L40S 48GB (Ada)"),
    "L4": (24, "NVIDIA L4 24GB (Ada)"),
    "A10G": (24, "NVIDIA A10G 24GB (Ampere, AWS)"),
    "A10": (24, "NVIDIA A10 24GB (Ampere)"),
    "T4": (16, "NVIDIA T4 16GB (Turing)"),
    "V100": (16, "NVIDIA V100 16GB (Volta)"),
    "V100-32GB": (32, "NVIDIA V100 32GB (Volta)"),
    "P100": (16, "NVIDIA P100 16GB (Pascal)"),
}

_ALIASES: dict[str, str] = {
    "H100-80GB": "H100",
    "H100-SXM": "H100",
    "H100-SXM5-80GB": "H100",
    "H100-80GB-HBM3": "H100",
    "H100-MEGA-80GB": "H100",
    "H200-141GB": "H200",
    "A100-40GB": "A100",
    "A100-SXM4-40GB": "A100",
    "A100-80G": "A100-80GB",
    "A100-SXM4-80GB": "A100-80GB",
    "A100-80GB-SXM4": "A100-80GB",
    "A10-24GB": "A10",
    "V100-16GB": "V100",
    "V100-SXM2-16GB": "V100",
    "V100-SXM2-32GB": "V100-32GB",
    "P100-16GB": "P100",
    "T4-16GB": "T4",
    "L4-24GB": "L4",
    "L40S-48GB": "L40S",
}


class AcceleratorError(ValueError):
    """An accelerator string that is not ``TYPE[:COUNT]`` with a known TYPE. ``suggestion`` is
    the closest canonical name, or ``None``."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


def _normal(name: str) -> str:
    n = name.strip().upper().replace("_", "-").replace(" ", "-")
    for prefix in ("NVIDIA-TESLA-", "NVIDIA-", "TESLA-"):
        if n.startswith(prefix):
            n = n[len(prefix):]
    return n


def canonical(name: str) -> str:
    """The canonical accelerator name for ``name`` (case-insensitive, alias-aware).

    Raises:
        AcceleratorError: unknown name; the message lists the known ones and the closest match.
    """
    n = _normal(name)
    if n in ACCELERATORS:
        return n
    if n in _ALIASES:
        return _ALIASES[n]
    close = difflib.get_close_matches(n, list(ACCELERATORS) + list(_ALIASES), n=1, cutoff=0.5)
    suggestion = _ALIASES.get(close[0], close[0]) if close else None
    raise AcceleratorError(
        f"unknown accelerator type '{name}'; expected one of {', '.join(ACCELERATORS)}",
        suggestion,
    )


@dataclass(frozen=True)
class Accelerator:
    """An accelerator request per node: ``type`` (canonical name) x ``count``."""

    type: str
    count: int = 1

    def __str__(self) -> str:
        return f"{self.type}:{self.count}"

    @property
    def memory_gib(self) -> int:
        return ACCELERATORS[self.type][0]


_SPEC_RE = re.compile(r"^\s*([A-Za-z0-9_\- ]+?)\s*(?::\s*(\d+))?\s*$")


def parse(value: str) -> Accelerator:
    """Parse ``TYPE[:COUNT]`` (``"H100:8"``, ``"a100-80gb:8"``, ``"L4"``) into an Accelerator.

    Raises:
        AcceleratorError: malformed text, COUNT < 1, or an unknown TYPE.
    """
    m = _SPEC_RE.match(value)
    if not m:
        raise AcceleratorError(f"expected TYPE[:COUNT] such as 'H100:8' or 'L4', got '{value}'")
    count = int(m.group(2)) if m.group(2) else 1
    if count < 1:
        raise AcceleratorError(f"accelerator count must be at least 1, got {count}")
    return Accelerator(canonical(m.group(1)), count)
