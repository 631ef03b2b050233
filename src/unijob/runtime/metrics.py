"""``log_metrics``: what a job reports for pipelines to read back (``steps.X.metrics.NAME``).

Rank 0 merges the values into ``metrics.json`` in the job's output directory (read back by the
local target and by any target whose output directory is reachable), prints one
``[unijob.metrics] {json}`` line to stdout (the line SageMaker ``MetricDefinitions`` and log-based
readers match), and on Databricks also sets them as task values
(``dbutils.jobs.taskValues.set``, https://docs.databricks.com/en/jobs/task-values.html, read
2026-11-29) so a later task's condition can read them. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

#: The file, in the job's output directory, that holds the metrics.
METRICS_FILE = "metrics.json"
#: The stdout prefix of the metrics line.
LINE_PREFIX = "[unijob.metrics] "


def log_metrics(values: Mapping[str, Any], *, output_dir: Optional[os.PathLike] = None) -> dict[str, Any]:
    """Report ``values`` (name -> number, bool or string) for this job; later calls merge.

    Args:
        values: metric name (letters, digits, ``_``, ``-``, ``.``) -> a finite number, bool or string.
        output_dir: where ``metrics.json`` goes; default ``runtime.context().output_dir``.

    Returns:
        all metrics logged so far (from rank 0; other ranks return ``values`` and write nothing).

    Raises:
        ValueError: a name or value of another kind, or NaN/infinity.
    """
    clean: dict[str, Any] = {}
    for k, v in values.items():
        if not isinstance(k, str) or not k or not all(c.isalnum() or c in "_-." for c in k):
            raise ValueError(f"metric name {k!r}: use letters, digits, '_', '-' or '.'")
        if hasattr(v, "item"):  # numpy scalars
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"metric {k}: {v} is not a finite number")
        if not isinstance(v, (int, float, bool, str)):
            raise ValueError(f"metric {k}: expected a number, bool or string, got {type(v).__name__}")
        clean[k] = v
    from unijob.runtime.environment import context

    ctx = context(os.environ)
    if ctx.rank != 0:
        return clean
    d = Path(output_dir) if output_dir is not None else Path(ctx.output_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / METRICS_FILE
    merged: dict[str, Any] = {}
    try:
        merged = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        pass
    merged.update(clean)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    print(LINE_PREFIX + json.dumps(clean, sort_keys=True), flush=True)
    _databricks_task_values(clean)
    return merged


def _databricks_task_values(values: Mapping[str, Any]) -> None:
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        return
    try:
        from pyspark.dbutils import DBUtils  # type: ignore
        from pyspark.sql import SparkSession  # type: ignore

        dbutils = DBUtils(SparkSession.builder.getOrCreate())
        for k, v in values.items():
            dbutils.jobs.taskValues.set(key=k, value=v)
    except Exception:  # noqa: BLE001 - outside a Databricks job task, there are no task values
        pass


def read_metrics(output_dir: os.PathLike) -> dict[str, Any]:
    """The metrics a job logged into ``output_dir`` ({} when none)."""
    try:
        data = json.loads((Path(output_dir) / METRICS_FILE).read_text())
    except (FileNotFoundError, ValueError, NotADirectoryError):
        return {}
    return data if isinstance(data, dict) else {}


def metrics_from_lines(lines: Any) -> dict[str, Any]:
    """The metrics in a job's log: every ``[unijob.metrics] {json}`` line :func:`log_metrics`
    printed, merged in order (a later value wins, as in ``metrics.json``). The prefix may follow
    whatever a platform puts before a line (a timestamp, ``[rank 0]``); lines whose JSON does not
    parse as an object are skipped. ``lines``: an iterable of str."""
    merged: dict[str, Any] = {}
    for line in lines:
        at = line.find(LINE_PREFIX)
        if at < 0:
            continue
        try:
            data = json.loads(line[at + len(LINE_PREFIX):].strip())
        except ValueError:
            continue
        if isinstance(data, dict):
            merged.update(data)
    return merged
