#!/usr/bin/env python3
"""Cold start of the CLI: `unijob --help`, `validate`, and `plan -o json` on every installed target,
against `python -c pass` and the floor of any click CLI that validates with pydantic.

Prints the median and min wall-clock seconds and the median CPU seconds of N fresh processes each
(default 15), each median as a multiple of `python -c pass` and as a ratio to `sky --help` when
SkyPilot is installed beside unijob, the load average before and after, and the goals with the
verdict on the wall and on the CPU medians. The spec is ``examples/portable/job.yaml`` (it has a
block for every target, so every adapter's options model validates it). Goals: `unijob --help`
under 0.3 s median (issue 2); `plan` on every target <= 0.3 s and `validate` <= 0.15 s (issue 20).

Baselines, run in the same turns: `import pydantic`; pydantic plus one model (its first model
loads most of pydantic: the floor of anything validated with pydantic); and that plus `import
click, yaml` (the floor of this CLI's design). On a shared machine wall time grows with the load
average; CPU time much less, so compare the ratios and the CPU column between runs.

Bytecode: the processes run with ``.pyc`` files (``PYTHONDONTWRITEBYTECODE`` removed, and
``PYTHONPYCACHEPREFIX`` set to a temporary directory unless it is set, so nothing is written into
the source tree), as an installed unijob runs; the row "validate, no .pyc" runs with
``PYTHONDONTWRITEBYTECODE=1`` and only the ``.pyc`` files beside the sources: in an editable
install that never wrote any (this machine's shells set the variable) every unijob module is
compiled from source on each start. The first plan of a Vertex or Databricks target after its SDK is
installed or upgraded reads the SDK's types once into ``<unijob home>/cache`` (seconds); one
untimed warm-up run per case pays that, and writes the ``.pyc`` files, as every later plan on the
machine would not.

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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "portable" / "job.yaml"
GOALS = {"unijob --help": 0.3, "unijob validate portable": 0.15, "plan": 0.3}
NO_PYC = "unijob validate, no .pyc"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    env = ENV
    if argv[0] == NO_PYC:
        # the .pyc files beside the sources only (the standard library's and site-packages'; an
        # editable unijob's sources have none when PYTHONDONTWRITEBYTECODE was always set), none written
        env = {k: v for k, v in ENV.items() if k != "PYTHONPYCACHEPREFIX"}
        argv, env = argv[1:], {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    n = ap.parse_args().n
    bindir = str(Path(sys.executable).parent)
    unijob = shutil.which("unijob", path=bindir) or "unijob"
    ENV.setdefault("PYTHONPYCACHEPREFIX", tempfile.mkdtemp(prefix="unijob-bench-pyc-"))
    model = "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python: import pydantic", [sys.executable, "-c", "import pydantic"]),
        ("python: pydantic + 1 model", [sys.executable, "-c", model]),
        ("python: click, yaml, pydantic + 1 model", [sys.executable, "-c", "import click, yaml\n" + model]),
        ("unijob --help", [unijob, "--help"]),
        ("unijob validate portable", [unijob, "validate", str(SPEC)]),
        (NO_PYC, [NO_PYC, unijob, "validate", str(SPEC)]),
    ]
    from unijob import registry

    skipped = []
    for target in registry.names():
        argv = [unijob, "plan", str(SPEC), "-t", target, "-o", "json"]
        if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV).returncode != 0:
            skipped.append(target)  # its SDK is missing (or the spec does not fit it): nothing to time
            continue
        cases.append((f"unijob plan -t {target} -o json", argv))
    sky = shutil.which("sky", path=bindir)
    if sky:
        cases.append(("sky --help", [sky, "--help"]))
    for _, argv in cases:
        run(argv)  # warm-up: OS caches, .pyc files, and the SDK type caches of a first plan
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpu: dict[str, list[float]] = {label: [] for label, _ in cases}
    load_before = os.getloadavg()[0]
    for _ in range(n):
        for label, argv in cases:
            wall, used = run(argv)
            times[label].append(wall)
            cpu[label].append(used)
    med = {label: statistics.median(ts) for label, ts in times.items()}
    base = med["python -c pass"]
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'cpu s':>7}   (n={n}, load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores; cpu s: median "
          "CPU time, which other load inflates less than wall time)")
    for label, _ in cases:
        extra = f", {med['sky --help'] / med[label]:.1f}x faster than sky --help" if sky and label != "sky --help" else ""
        print(f"{label:<40} {med[label]:>9.3f} {min(times[label]):>7.3f} {statistics.median(cpu[label]):>7.3f}   "
              f"({med[label] / base:.1f}x python{extra})")
    if skipped:
        print(f"not timed (plan failed: SDK not installed?): {', '.join(skipped)}")
    print("goals (issue 2, issue 20): median wall / median CPU seconds")
    for label, _ in cases:
        goal = GOALS.get(label) or (GOALS["plan"] if label.startswith("unijob plan") else None)
        if goal is not None:
            c = statistics.median(cpu[label])
            print(f"  {label:<38} <= {goal:.2f} s: wall {med[label]:.3f} {'met' if med[label] <= goal else 'NOT met'}, "
                  f"cpu {c:.3f} {'met' if c <= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
