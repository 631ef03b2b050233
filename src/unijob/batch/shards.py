"""One shard of a batch prediction spread over several machines: ``python -m unijob.batch.shards CONFIG_JSON``.

A cluster target (the Kubernetes Indexed Job) starts ``shards`` copies of this module, each with its
index in the environment variable named by ``index_env`` (Kubernetes: ``JOB_COMPLETION_INDEX``).
All of them see the same ``input`` and ``output`` (a shared volume or an object store).

- **Sharding**: the sorted input files (:func:`unijob.batch.runner.list_inputs`) round-robin: shard
  ``i`` of ``n`` takes files ``i, i + n, i + 2n, ...``; deterministic, and balanced when the files
  are of similar size. A file is never split, so each ``<file>.out`` is written by one shard in
  input order, exactly as the local runner writes it; a shard with no file writes nothing but its
  summary.
- **Per shard**: :func:`unijob.batch.runner.run` writes the ``.out`` files, ``_shards/<run>/errors-<i>.jsonl``
  and ``_shards/<run>/summary-<i>.json`` (``<run>`` is ``run_id``, the job's name, so a rerun into the
  same output never counts an older run's shards).
- **The whole job's error budget**: after writing its summary a shard lists the summaries; the shard
  that finds all ``n`` (the last to finish; two finishing together both do the same) merges them
  into ``_SUMMARY.json`` and the errors into ``errors.jsonl`` (by file, then line), and judges
  ``max_error_fraction`` on the job's totals. Each shard writes before it lists, so at least one
  shard sees every summary. A shard that is not last exits 0 whatever its own errors.
- **Publication**: a peer must never read half a summary. On a file system (a mounted volume) a
  shard writes ``.summary-<i>.json`` and renames it (atomic on POSIX); on an object store
  (:data:`OBJECT_STORES`: s3://, gs://, az://) it writes ``summary-<i>.json`` in one PUT, which
  appears whole or not at all, and the merge drops the listings its filesystem cached so the
  peers' summaries written since are seen (S3 and Cloud Storage are read-after-write consistent).

Exit status: 0 (done, within the budget or not last), :data:`EXIT_BUDGET` (the job's errors exceed
the budget), :data:`EXIT_CONFIG` (no input, or no handler); any other non-zero is a crash worth a
retry. The Kubernetes plan fails the Job at once on the two named codes (``podFailurePolicy``
``FailJob``) rather than rerunning a shard that would fail the same way.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

from unijob.batch import runner

#: The job's errors exceed ``max_error_fraction``: rerunning cannot help.
EXIT_BUDGET = 3
#: The configuration cannot run (no input files, no handler): rerunning cannot help.
EXIT_CONFIG = 2
SHARDS_DIR = "_shards"


#: fsspec protocols whose writes are one object PUT at close (s3fs/gcsfs/adlfs upload a large file
#: as a multipart upload, which also becomes one object when completed): a reader sees the whole
#: object or none, so nothing is written aside and renamed (a "rename" there is a copy and a delete).
#: S3: "Amazon S3 never adds partial objects; if you receive a success response, Amazon S3 added the
#: entire object" (PutObject, docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html), strongly
#: read-after-write consistent since December 2020 (S3 User Guide, "Amazon S3 data consistency
#: model"); Cloud Storage: uploads are atomic and strongly consistent (cloud.google.com/storage/docs/
#: consistency); Azure Blob: a block blob changes at Put Blob / Put Block List; fsspec's memory
#: filesystem stores a file at close.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})


def whole_writes(uri: str) -> bool:
    """True when ``uri`` is on an object store (:data:`OBJECT_STORES`): a written object appears
    whole at close. False for local paths and mounted volumes (published by a rename instead)."""
    return "://" in uri and uri.split("://", 1)[0].lower() in OBJECT_STORES


def shard_index(config: dict[str, Any]) -> int:
    """This shard's index: ``config["index"]``, else the variable ``config["index_env"]``.

    Raises:
        ValueError: neither is set, or the index is outside ``0..shards-1``.
    """
    raw = config.get("index")
    if raw is None:
        name = config.get("index_env") or "JOB_COMPLETION_INDEX"
        raw = os.environ.get(name)
        if raw is None:
            raise ValueError(f"no shard index: ${name} is not set")
    index, count = int(raw), int(config.get("shards", 1))
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return index


def _read_json(path: str) -> Optional[Any]:
    try:
        with runner._open(path, "rt", encoding="utf-8") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def merge(config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The job's summary when every shard of ``run_id`` has written its own (written to
    ``_SUMMARY.json``, the errors to ``errors.jsonl``), else None."""
    out, count, run_id = config["output"].rstrip("/"), int(config["shards"]), str(config["run_id"])
    base = f"{out}/{SHARDS_DIR}/{run_id}"
    fs, base_path = runner._url_to_fs(base)
    if hasattr(fs, "invalidate_cache"):
        # peers wrote since: a listing s3fs/gcsfs cached in this process must not answer "no such
        # file" for their summaries (fsspec/s3fs#851: "expected ... use invalidate_cache")
        fs.invalidate_cache(base_path)
    parts = [_read_json(f"{base}/summary-{i}.json") for i in range(count)]
    if any(p is None for p in parts):
        return None
    errors: list[dict[str, Any]] = []
    for i in range(count):
        with runner._open(f"{base}/errors-{i}.jsonl", "rt", encoding="utf-8") as f:
            errors += [json.loads(line) for line in f if line.strip()]
    errors.sort(key=lambda e: (e["file"], e["line"]))
    with runner._open(f"{out}/errors.jsonl", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in errors)
    totals = {k: sum(int(p[k]) for p in parts) for k in ("lines", "predictions", "errors", "files")}
    budget = float(config.get("max_error_fraction", 0.0))
    fraction = totals["errors"] / totals["lines"] if totals["lines"] else 0.0
    summary = {**totals, "error_fraction": round(fraction, 6), "max_error_fraction": budget,
               "within_budget": fraction <= budget, "seconds": max(float(p["seconds"]) for p in parts),
               "shards": count, "run_id": run_id, "instances_per_request": parts[0]["instances_per_request"],
               "per_shard": [{k: p[k] for k in ("files", "lines", "predictions", "errors", "seconds")} for p in parts]}
    with runner._open(f"{out}/_SUMMARY.json", "wt", encoding="utf-8") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    return summary


def run_shard(config: dict[str, Any]) -> int:
    """Run this shard, then judge the whole job if it is the last; returns the exit status."""
    try:
        index = shard_index(config)
    except ValueError as e:
        print(f"unijob batch: {e}", file=sys.stderr)
        return EXIT_CONFIG
    count, run_id = int(config.get("shards", 1)), str(config.get("run_id") or "run")
    config = {**config, "shards": count, "run_id": run_id,
              "handler": config.get("handler") or os.environ.get("UNIJOB_HANDLER"),
              "base_dir": config.get("base_dir") or os.getcwd()}
    if not config["handler"]:
        print("unijob batch: no handler: the batch section names none and the image sets no UNIJOB_HANDLER "
              "(batch.image must be a unijob serving image, `unijob serve-image`)", file=sys.stderr)
        return EXIT_CONFIG
    rel = f"{SHARDS_DIR}/{run_id}"
    # an object store's write is one PUT, whole or absent: the summary goes to its final key at once
    aside = "" if whole_writes(config["output"]) else "."
    part = {**config, "shard": [index, count], "errors_file": f"{rel}/errors-{index}.jsonl",
            "summary_file": f"{rel}/{aside}summary-{index}.json"}
    from unijob.serve.handler import HandlerError

    try:
        mine = runner.run(part)
    except (FileNotFoundError, HandlerError) as e:
        print(f"unijob batch: {e}", file=sys.stderr)
        return EXIT_CONFIG
    out = config["output"].rstrip("/")
    if not whole_writes(out):  # a file system: publish the summary whole, by a rename
        fs, _ = runner._url_to_fs(out)
        src, dst = f"{out}/{rel}/.summary-{index}.json", f"{out}/{rel}/summary-{index}.json"
        if isinstance(fs, runner._LocalFS):
            os.replace(src, dst)
        else:
            fs.mv(src, dst)
    print(f"unijob batch: shard {index}/{count}: {mine['files']} file(s), {mine['predictions']} predictions, "
          f"{mine['errors']} errors in {mine['lines']} lines ({mine['seconds']} s)", flush=True)
    summary = merge(config)
    if summary is None:
        print(f"unijob batch: shard {index}/{count} done; the last shard to finish judges the error budget",
              flush=True)
        return 0
    print(f"unijob batch: {summary['predictions']} predictions, {summary['errors']} errors in {summary['lines']} "
          f"lines across {count} shard(s)", flush=True)
    if not summary["within_budget"]:
        print(f"unijob batch: FAILED: {summary['errors']} of {summary['lines']} lines failed "
              f"({summary['error_fraction']:.2%} > the error budget {summary['max_error_fraction']:.2%}); "
              f"see {out}/errors.jsonl", file=sys.stderr, flush=True)
        return EXIT_BUDGET
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m unijob.batch.shards CONFIG_JSON", file=sys.stderr)
        return EXIT_CONFIG
    return run_shard(json.loads(args[0]))


if __name__ == "__main__":
    sys.exit(main())
