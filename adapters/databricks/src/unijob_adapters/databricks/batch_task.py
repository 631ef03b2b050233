"""unijob's batch-prediction task on a Databricks cluster (uploaded as ``_unijob_batch.py``; the
standard library, pyspark, pandas and pyarrow of the Databricks Runtime, and the runtime wheel's
:mod:`unijob.batch.runner`). It is the ``spark_python_task`` of a batch run::

    python _unijob_batch.py CONFIG_JSON        # the runner's config (see unijob.batch.runner)

Two engines, chosen by the plan (``"engine"`` in the config):

``spark`` (a cluster with worker nodes, ``batch.replicas`` > 1): the driver lists the input files
and cuts them into chunks of ``instances_per_request`` lines, as the local runner does
(:func:`unijob.batch.runner.run`, which also writes every file). The chunks go to the executors as
a DataFrame (``createDataFrame``, repartitioned over the cluster's cores) and are predicted there
with ``mapInPandas``: each Python worker loads the handler and the model once and calls
``predict`` per chunk. Each window of chunks is one Spark job whose results come back to the
driver and are written in input order; a window holds about :data:`WINDOW_LINES` lines, which
bounds the driver's memory.

``pool`` (a single-node cluster, ``batch.replicas`` 1): the local runner itself on the driver, one
worker process per core (:func:`unijob.batch.runner.run`); Spark is not used.

Why: on one machine the pool is faster (``benchmarks/bench_databricks_batch.py``: Spark's
``mapInPandas`` on ``local[2]`` gave 0.32x the pool's instances/s here, its per-job scheduling,
Arrow and Python-worker overhead with no machine added), while only Spark reaches the worker nodes
that ``batch.replicas`` adds. For those, ``mapInPandas``: Databricks recommends pandas UDFs
(``mapInPandas`` is their iterator form) for model inference ("Deep learning model inference workflow",
https://docs.gcp.databricks.com/applications/machine-learning/model-inference/dl-model-inference.html,
read 2026-11-29); and the DataFrame API, unlike RDDs (``sc.parallelize``, ``textFile``), also works
on shared access-mode clusters ("Compute access mode limitations for Unity Catalog",
https://learn.microsoft.com/en-us/azure/databricks/compute/access-mode-limitations: RDD APIs are
not supported there).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterator, Optional

#: Lines per Spark job (one window of chunks): enough to keep every core busy, small enough that
#: the window's lines and predictions fit in the driver's memory.
WINDOW_LINES = 100_000
_SCHEMA_IN = "seq long, first long, lines array<string>"
_SCHEMA_OUT = "seq long, results string"


class BatchFailed(Exception):
    """More lines failed than ``batch.max_error_fraction`` allows (the message says how many)."""


def _predict_batches(init: tuple, batches: Iterator[Any]) -> Iterator[Any]:
    """Executor side of ``mapInPandas``: the handler loaded once per Python worker, then each
    chunk through the runner's own ``_run_chunk`` (so errors read as on the local target)."""
    import pandas as pd

    from unijob.batch import runner

    if getattr(runner, "_databricks_init", None) != init:
        runner._init(*init)
        runner._databricks_init = init
    for pdf in batches:
        seqs, results = [], []
        for seq, first, lines in zip(pdf["seq"], pdf["first"], pdf["lines"]):
            seqs.append(int(seq))
            results.append(json.dumps(runner._run_chunk((int(first), [str(x) for x in lines]))))
        yield pd.DataFrame({"seq": pd.Series(seqs, dtype="int64"), "results": pd.Series(results, dtype="object")})


def _parallelism(spark: Any) -> int:
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - no SparkContext on shared access mode (Spark Connect)
        return int(spark.conf.get("spark.default.parallelism", "0") or 0) or (os.cpu_count() or 1)


class SparkChunks:
    """A :data:`unijob.batch.runner.ChunkMapper` that maps chunks on the cluster with ``mapInPandas``."""

    def __init__(self, spark: Any, window_lines: int = WINDOW_LINES) -> None:
        self.spark = spark
        self.window_lines = window_lines
        self.parallelism = _parallelism(spark)

    def __call__(self, init: tuple, chunks: Iterator[tuple[int, list[str]]]) -> Iterator[list]:
        window: list[tuple[int, list[str]]] = []
        lines = 0
        for chunk in chunks:
            window.append(chunk)
            lines += len(chunk[1])
            if lines >= self.window_lines:
                yield from self._map(init, window)
                window, lines = [], 0
        if window:
            yield from self._map(init, window)

    def _map(self, init: tuple, window: list[tuple[int, list[str]]]) -> Iterator[list]:
        rows = [(i, first, lines) for i, (first, lines) in enumerate(window)]
        df = self.spark.createDataFrame(rows, _SCHEMA_IN).repartition(min(len(rows), self.parallelism))
        out = df.mapInPandas(lambda batches: _predict_batches(init, batches), _SCHEMA_OUT).collect()
        by_seq = {int(r["seq"]): r["results"] for r in out}
        if sorted(by_seq) != list(range(len(rows))):
            raise RuntimeError(f"Spark returned {len(by_seq)} of {len(rows)} chunks")
        for i in range(len(rows)):
            yield [tuple(x) for x in json.loads(by_seq[i])]


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: _unijob_batch.py CONFIG_JSON", file=sys.stderr)
        return 2
    config = json.loads(args[0])
    from unijob.batch import runner

    per_call = config.get("instances_per_request", 64)
    if config.get("engine") == "pool":
        config["replicas"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        print(f"unijob batch: a pool of {config['replicas']} process(es) on the driver, {per_call} instances per "
              "predict call", flush=True)
        summary = runner.run(config)
    else:
        from pyspark.sql import SparkSession

        mapper = SparkChunks(SparkSession.builder.getOrCreate())
        print(f"unijob batch: mapInPandas over {mapper.parallelism} Spark task slot(s), {per_call} instances per "
              "predict call", flush=True)
        summary = runner.run(config, map_chunks=mapper)
    print(f"unijob batch: {summary['predictions']} predictions, {summary['errors']} errors in {summary['lines']} "
          f"lines ({summary['seconds']} s)", flush=True)
    failure = runner.budget_failure(summary, config["output"])
    if failure:
        raise BatchFailed(failure)  # the run ends FAILED with this as its error
    return 0


if __name__ == "__main__":
    sys.exit(main())
