#!/usr/bin/env python3
"""Databricks batch: the Spark task's ``mapInPandas`` against a process pool on the driver, on one machine.

The Databricks batch task (``unijob_adapters.databricks.batch_task``) maps the handler with
``mapInPandas``; the alternative was the local runner's process pool on the driver. Both run here in
the same Python (a venv with pyspark, pandas, pyarrow and numpy, and unijob's runtime wheel with the
batch runner, as on a cluster), over the same JSON Lines file and the same CPU-bound handler as
``bench_batch.py`` (a NumPy perceptron, 1 BLAS thread per process):

- ``pool``: :func:`unijob.batch.runner.run` with ``--replicas`` worker processes;
- ``spark``: the same ``run`` with ``map_chunks=SparkChunks(spark)`` on ``local[--replicas]``
  (the Spark session started before the clock; its start-up is printed on its own).

Printed: instances/s of each (median of ``--rounds``), their ratio, whether the files are equal.
On one node the pool wins by Spark's per-job overhead; Spark's gain is the other nodes of a
cluster (``batch.replicas`` workers), which one machine cannot show.

    .venv/bin/python benchmarks/bench_databricks_batch.py [--lines 20000] [--replicas 2] [--chunk 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_batch import HANDLER  # noqa: E402

CHILD = r'''
import json, statistics, sys, time
from pathlib import Path
a = json.loads(sys.argv[1])
d = Path(a["dir"])
from pyspark.sql import SparkSession
from unijob.batch import runner
import _unijob_batch as task

t0 = time.perf_counter()
spark = SparkSession.builder.master(f"local[{a['replicas']}]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
startup = time.perf_counter() - t0
cfg = {"handler": "bench_handler.py:MLP", "base_dir": str(d), "model": str(d / "model"), "input": str(d / "in.jsonl"),
       "replicas": a["replicas"], "instances_per_request": a["chunk"]}
pool, sp = [], []
for r in range(a["rounds"]):
    pool.append(runner.run({**cfg, "output": str(d / f"pool-{r}")})["seconds"])
    sp.append(runner.run({**cfg, "output": str(d / f"spark-{r}")}, map_chunks=task.SparkChunks(spark))["seconds"])
same = (d / "pool-0" / "in.jsonl.out").read_text() == (d / "spark-0" / "in.jsonl.out").read_text()
print(json.dumps({"pool": statistics.median(pool), "spark": statistics.median(sp), "startup": startup, "same": same}))
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--work", type=int, default=4, help="passes through the perceptron per instance")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pythons", default=os.path.join(tempfile.gettempdir(), "unijob-bench-pythons"),
                    help="where the venv with pyspark is cached")
    args = ap.parse_args()
    if not any(os.access(os.path.join(p, "java"), os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep)):
        print("pyspark needs a Java runtime (java 17+) on PATH", file=sys.stderr)
        return 2
    from unijob.bundle import runtime_wheel
    from unijob.testing.contracts import clean_env, job_python, python_layer
    from unijob_adapters.databricks.batch import task_path

    image = job_python(args.pythons, ["pyspark", "pandas", "pyarrow", "numpy"])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        layer = python_layer(image, d / "layer")
        wheel = runtime_wheel(["databricks"], batch=True).write(d)
        subprocess.run([str(layer / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                       check=True, env=clean_env())
        (d / "_unijob_batch.py").write_text(task_path().read_text())
        (d / "bench_handler.py").write_text(HANDLER)
        (d / "model").mkdir()
        (d / "model" / "work.txt").write_text(str(args.work))
        import random

        rnd = random.Random(7)
        with open(d / "in.jsonl", "w") as f:
            for _ in range(args.lines):
                f.write(json.dumps([rnd.randint(0, 16) for _ in range(64)]) + "\n")
        env = clean_env({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(d),
                         "PYSPARK_PYTHON": str(layer / "python")})
        out = subprocess.run([str(layer / "python"), "-c", CHILD, json.dumps({**vars(args), "dir": str(d)})],
                             env=env, capture_output=True, text=True, cwd=d)
        if out.returncode != 0:
            print(out.stdout + out.stderr[-4000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"cores: {len(os.sched_getaffinity(0))}, lines: {args.lines}, chunk: {args.chunk}, work: {args.work}, "
          f"rounds: {args.rounds}, same output files: {r['same']}, Spark session start-up: {r['startup']:.1f} s")
    print(f"{f'process pool on the driver, {args.replicas} replicas':<46} {args.lines / r['pool']:>10,.0f} instances/s  1.00x")
    print(f"{f'Spark mapInPandas, local[{args.replicas}]':<46} {args.lines / r['spark']:>10,.0f} instances/s  "
          f"{r['pool'] / r['spark']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
