#!/usr/bin/env python3
"""Cold start of the CLI: `unijob --help`, `validate` and `plan --target local` against `python -c pass`.

Prints the median and min wall-clock seconds of N fresh processes each (default 15). The goal
(issue 2): `unijob --help` under 0.3 s median on the project's 2-core machine.

    .venv/bin/python benchmarks/bench_cli_startup.py [-n 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "quickstart" / "job.yaml"


def measure(argv: list[str], n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    n = ap.parse_args().n
    unijob = shutil.which("unijob", path=str(Path(sys.executable).parent)) or "unijob"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("unijob --help", [unijob, "--help"]),
        ("unijob validate quickstart", [unijob, "validate", str(SPEC)]),
        ("unijob plan quickstart -t local", [unijob, "plan", str(SPEC), "--target", "local"]),
    ]
    print(f"{'command':<34} {'median s':>9} {'min s':>7}   (n={n})")
    base = None
    for label, argv in cases:
        med, mn = measure(argv, n)
        base = base or med
        print(f"{label:<34} {med:>9.3f} {mn:>7.3f}   ({med / base:.1f}x python)")


if __name__ == "__main__":
    main()
