#!/usr/bin/env python3
"""Local batch prediction throughput: unijob.batch.runner against calling the handler in one process.

Both read the same JSON Lines file (``--lines`` instances of 64 numbers), parse each line, call
the same handler's ``predict`` on chunks of ``--chunk`` instances and write one JSON line per
input line. The baseline does it in this process with no pool; unijob runs
:func:`unijob.batch.runner.run` with ``--replicas`` worker processes (each loads the model once).
The handler is CPU-bound (a two-layer perceptron in NumPy with 1 thread per process, about the
cost of the quickstart's sklearn MLP per instance, times ``--work``), so the figure is what the
pool buys on this machine's cores. Printed: instances/s of each (median of ``--rounds``) and the
ratio; the issue's goal is >= 1.6x with 2 replicas on 2 cores.

    .venv/bin/python benchmarks/bench_batch.py [--lines 20000] [--replicas 2] [--chunk 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--work", type=int, default=4, help="passes through the perceptron per instance")
    ap.add_argument("--rounds", type=int, default=3)
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
        base, pool = [], []
        for r in range(args.rounds):
            base.append(baseline(d, data, d / f"base-{r}.jsonl", args.chunk))
            summary = run({"handler": "bench_handler.py:MLP", "base_dir": str(d), "model": str(d / "model"),
                           "input": str(data), "output": str(d / f"out-{r}"), "replicas": args.replicas,
                           "instances_per_request": args.chunk})
            pool.append(summary["seconds"])
            assert summary["predictions"] == args.lines
        same = [json.loads(x)["prediction"] for x in (d / "base-0.jsonl").read_text().splitlines()] == \
               [json.loads(x)["prediction"] for x in (d / "out-0" / "in.jsonl.out").read_text().splitlines()]
    b, p = statistics.median(base), statistics.median(pool)
    print(f"cores: {len(os.sched_getaffinity(0))}, lines: {args.lines}, chunk: {args.chunk}, work: {args.work}, "
          f"rounds: {args.rounds}, same predictions: {same}")
    print(f"{'one process (handler called directly)':<44} {args.lines / b:>10,.0f} instances/s  1.00x")
    print(f"{f'unijob.batch.runner, {args.replicas} replicas':<44} {args.lines / p:>10,.0f} instances/s  "
          f"{b / p:.2f}x   (goal >= 1.6x on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
