#!/usr/bin/env python3
"""Local batch prediction throughput: unijob.batch.runner against calling the handler in one process.

Both read the same JSON Lines file (``--lines`` instances of 64 numbers), parse each line, call
the same handler's ``predict`` on chunks of ``--chunk`` instances and write one JSON line per
input line. The baseline does it in this process with no pool; unijob runs
:func:`unijob.batch.runner.run` with ``--replicas`` worker processes (each loads the model once).
The handler is CPU-bound (a two-layer perceptron in NumPy with 1 thread per process, about the
cost of the quickstart's sklearn MLP per instance, times ``--work``), so the figure is what the
pool buys on this machine's cores. The two alternate round by round (so both see the same load
from anything else on the machine). Printed: instances/s of each (median of ``--rounds``), the
ratio (the issue's goal is >= 1.6x with 2 replicas on 2 cores), the load average, and the CPU
seconds per 1000 instances of each side (unijob's split into the parent, which cuts the input and
writes the output, and the workers). The CPU figures hardly depend on other load; the ratio does:
Linux schedules by session (autogroup) when ``kernel.sched_autogroup_enabled`` is 1, so on a
machine busy with other sessions this benchmark's session gets its share however many processes
it runs, and the ratio tends to 1. Measure when ``uptime`` shows the load lowest.

    .venv/bin/python benchmarks/bench_batch.py [--lines 50000] [--replicas 2] [--chunk 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per process, for both sides
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HANDLER = textwrap.dedent("""
    import numpy as np

    class MLP:
        def load(self, model_dir):
            rng = np.random.default_rng(0)
            self.w1, self.w2 = rng.normal(size=(64, 512)), rng.normal(size=(512, 10))
            self.work = int(open(model_dir / "work.txt").read()) if model_dir else 1

        def predict(self, instances):
            x = np.asarray(instances, dtype=float) / 16.0
            for _ in range(self.work):
                h = np.tanh(x @ self.w1)
                out = h @ self.w2
            return [int(i) for i in out.argmax(axis=1)]
""")


def baseline(handler_dir: Path, data: Path, out: Path, chunk: int) -> float:
    sys.path.insert(0, str(handler_dir))
    from unijob.serve.handler import load_handler

    h = load_handler("bench_handler.py:MLP", handler_dir)
    t0 = time.perf_counter()
    h.load(handler_dir / "model")
    with open(data) as f, open(out, "w") as o:
        buf: list = []
        for line in f:
            buf.append(json.loads(line))
            if len(buf) == chunk:
                for p in h.predict(buf):
                    o.write(json.dumps({"prediction": p}) + "\n")
                buf = []
        if buf:
            for p in h.predict(buf):
                o.write(json.dumps({"prediction": p}) + "\n")
    return time.perf_counter() - t0


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds of this process (``RUSAGE_SELF``) or its reaped children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--work", type=int, default=4, help="passes through the perceptron per instance")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from unijob.batch.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "bench_handler.py").write_text(HANDLER)
        (d / "model").mkdir()
        (d / "model" / "work.txt").write_text(str(args.work))
        import random

        rnd = random.Random(7)
        data = d / "in.jsonl"
        with open(data, "w") as f:
            for _ in range(args.lines):
                f.write(json.dumps([rnd.randint(0, 16) for _ in range(64)]) + "\n")
        base, pool, loads = [], [], []
        cpu: dict[str, list[float]] = {"base": [], "parent": [], "workers": []}
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            c0 = cpu_seconds(resource.RUSAGE_SELF)
            base.append(baseline(d, data, d / f"base-{r}.jsonl", args.chunk))
            c1, w1 = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
            summary = run({"handler": "bench_handler.py:MLP", "base_dir": str(d), "model": str(d / "model"),
                           "input": str(data), "output": str(d / f"out-{r}"), "replicas": args.replicas,
                           "instances_per_request": args.chunk})
            c2, w2 = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
            pool.append(summary["seconds"])
            cpu["base"].append(c1 - c0)
            cpu["parent"].append(c2 - c1)
            cpu["workers"].append(w2 - w1)  # the pool's workers are joined (so counted) when run returns
            print(f"round {r + 1}: one process {args.lines / base[-1]:,.0f}/s, unijob {args.lines / pool[-1]:,.0f}/s, "
                  f"{base[-1] / pool[-1]:.2f}x (load average {loads[-1]:.1f})", flush=True)
            assert summary["predictions"] == args.lines
        same = [json.loads(x)["prediction"] for x in (d / "base-0.jsonl").read_text().splitlines()] == \
               [json.loads(x)["prediction"] for x in (d / "out-0" / "in.jsonl.out").read_text().splitlines()]
    b, p = statistics.median(base), statistics.median(pool)
    ratio = statistics.median(x / y for x, y in zip(base, pool))
    per_k = {k: statistics.median(v) / args.lines * 1000 for k, v in cpu.items()}
    print(f"cores: {len(os.sched_getaffinity(0))}, lines: {args.lines}, chunk: {args.chunk}, work: {args.work}, "
          f"rounds: {args.rounds} (alternating), load average {min(loads):.1f}-{max(loads):.1f}, "
          f"same predictions: {same}")
    print(f"{'one process (handler called directly)':<44} {args.lines / b:>10,.0f} instances/s  1.00x   "
          f"cpu {per_k['base']:.3f} s/1000")
    print(f"{f'unijob.batch.runner, {args.replicas} replicas':<44} {args.lines / p:>10,.0f} instances/s  "
          f"{ratio:.2f}x   cpu {per_k['parent'] + per_k['workers']:.3f} s/1000 (parent {per_k['parent']:.3f}, "
          f"workers {per_k['workers']:.3f})   (goal >= 1.6x on 2 cores; median of the rounds' ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
