#!/usr/bin/env python3
"""Local gang launch time: from ``LocalAdapter.submit`` to every rank running user code.

Each rank's first statement writes ``time.time()`` to a file; the figure is the latest of those
stamps minus the time just before ``submit`` (the plan is built beforehand, as the CLI does). For
1, 2, 4 and 8 ranks (one node), the median of ``-n`` runs, against
``torchrun --standalone --nproc-per-node N`` with the same script when torch is importable.

    .venv/bin/python benchmarks/bench_gang_launch.py [-n 5] [--torch-python PATH]

``--torch-python`` names an interpreter with torch installed for the torchrun side (default: this
one), so the comparison runs without putting torch into the project's environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """\
import os, time
t = time.time()
with open(os.path.join(os.environ["BENCH_OUT"], "t-" + os.environ["RANK"]), "w") as f:
    f.write(repr(t))
"""


def stamps(out: Path, n: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(out.glob("t-*"))
        texts = [f.read_text() for f in files]
        if len(files) == n and all(texts):
            return max(float(t) for t in texts)
        time.sleep(0.002)
    raise TimeoutError(f"only {len(list(out.glob('t-*')))} of {n} ranks started")


def local_once(ranks: int, work: Path, i: int) -> float:
    os.environ["UNIJOB_HOME"] = str(work / "home")
    from unijob.local.adapter import LocalAdapter
    from unijob.spec import JobSpec

    out = work / f"local-{ranks}-{i}"
    out.mkdir()
    spec = JobSpec.model_validate({"name": "bench", "script": "bench_rank.py", "env": {"BENCH_OUT": str(out)},
                                   "resources": {"processes_per_node": ranks}}, context={"base_dir": work})
    adapter = LocalAdapter()
    plan = adapter.plan(spec, f"bench-{ranks}-{i}")
    t0 = time.time()
    handle = adapter.submit(plan)
    t = stamps(out, ranks) - t0
    while not adapter.status(handle).state.is_final:
        time.sleep(0.01)
    return t


def torchrun_once(ranks: int, work: Path, i: int, python: str) -> float:
    out = work / f"torchrun-{ranks}-{i}"
    out.mkdir()
    t0 = time.time()
    proc = subprocess.Popen([python, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc-per-node={ranks}", str(work / "bench_rank.py")],
                            env={**os.environ, "BENCH_OUT": str(out)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = stamps(out, ranks) - t0
    finally:
        proc.wait(timeout=60)
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5, help="runs per rank count (median reported)")
    ap.add_argument("--torch-python", default=sys.executable, help="interpreter with torch, for torchrun")
    args = ap.parse_args()
    n, tpy = args.n, args.torch_python
    have_torch = subprocess.run([tpy, "-c", "import torch"], capture_output=True).returncode == 0
    print(f"gang launch time, submit -> every rank running user code; median of {n} runs, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'ranks':>5}  {'unijob local':>13}  {'torchrun --standalone':>22}  {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench_rank.py").write_text(SCRIPT)
        for ranks in (1, 2, 4, 8):
            local = statistics.median(local_once(ranks, work, i) for i in range(n))
            if have_torch:
                tr = statistics.median(torchrun_once(ranks, work, i, tpy) for i in range(n))
                print(f"{ranks:>5}  {local:>12.3f}s  {tr:>21.3f}s  {local / tr:>5.2f}x")
            else:
                print(f"{ranks:>5}  {local:>12.3f}s  {'-':>22}  {'-':>6}")
    if not have_torch:
        print(f"torchrun: skipped (torch is not importable by {tpy}; pass --torch-python)")


if __name__ == "__main__":
    main()
