#!/usr/bin/env python3
"""Cold start of the CLI: `unijob --help`, `validate`, and `plan -o json` on every installed target,
against `python -c pass`.

Prints the median and min wall-clock seconds of N fresh processes each (default 15), and each
median as a multiple of `python -c pass` and as a ratio to `sky --help` when SkyPilot is
installed beside unijob. The spec is ``examples/portable/job.yaml`` (it has a block for every
target). Goals: `unijob --help` under 0.3 s median (issue 2); `plan` on every target <= 0.3 s and
`validate` <= 0.15 s (issue 20). The first plan of a Vertex or Databricks target after its SDK is
installed or upgraded reads the SDK's types once into ``<unijob home>/cache`` (seconds); one
untimed warm-up run per case pays that, as every later plan on the machine would not.

Commands run one after another in turns (round-robin), so a burst of load from something else
on the machine spreads over all of them instead of one. Targets whose SDK is missing are listed
and skipped.

    .venv/bin/python benchmarks/bench_cli_startup.py [-n 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "portable" / "job.yaml"


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    n = ap.parse_args().n
    bindir = str(Path(sys.executable).parent)
    unijob = shutil.which("unijob", path=bindir) or "unijob"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("unijob --help", [unijob, "--help"]),
        ("unijob validate portable", [unijob, "validate", str(SPEC)]),
    ]
    from unijob import registry

    skipped = []
    for target in registry.names():
        argv = [unijob, "plan", str(SPEC), "-t", target, "-o", "json"]
        if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            skipped.append(target)  # its SDK is missing (or the spec does not fit it): nothing to time
            continue
        cases.append((f"unijob plan -t {target} -o json", argv))
    sky = shutil.which("sky", path=bindir)
    if sky:
        cases.append(("sky --help", [sky, "--help"]))
    for _, argv in cases:
        run(argv)  # warm-up: OS caches, and the SDK type caches of a first plan
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpu: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(n):
        for label, argv in cases:
            wall, used = run(argv)
            times[label].append(wall)
            cpu[label].append(used)
    med = {label: statistics.median(ts) for label, ts in times.items()}
    base = med["python -c pass"]
    print(f"{'command':<36} {'median s':>9} {'min s':>7} {'cpu s':>7}   (n={n}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; cpu s: median CPU time, which other load "
          "inflates less than wall time)")
    for label, _ in cases:
        extra = f", {med['sky --help'] / med[label]:.1f}x faster than sky --help" if sky and label != "sky --help" else ""
        print(f"{label:<36} {med[label]:>9.3f} {min(times[label]):>7.3f} {statistics.median(cpu[label]):>7.3f}   "
              f"({med[label] / base:.1f}x python{extra})")
    if skipped:
        print(f"not timed (plan failed: SDK not installed?): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
