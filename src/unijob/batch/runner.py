"""The local batch-prediction engine: ``python -m unijob.batch.runner CONFIG_JSON``.

A pool of ``replicas`` worker processes (``multiprocessing``, fork where the platform has it), each
loading the handler and the model once; the parent cuts each input file into blocks of whole lines
(bytes, at least :data:`BLOCK_LINES` lines) and hands them out in order; a worker predicts a block
``instances_per_request`` instances per ``predict`` call and sends back its output lines as one
bytes object, which the parent writes in input order (:class:`unijob.batch.pool.WorkerPool`).
Standard library + :mod:`unijob.serve.handler`.

Config (JSON object): ``handler`` (reference), ``base_dir`` (where the handler is imported from),
``model`` (local path, archive or URI; optional), ``input`` (file, directory or URI), ``output``
(directory or URI), ``replicas``, ``instances_per_request``, ``max_error_fraction``,
``parameters`` (passed to ``predict`` when it takes them). Optional, for sharded runs
(:mod:`unijob.batch.shards`): ``shard`` ``[index, count]`` (this run takes the sorted input files
``index, index + count, ...``), ``errors_file`` and ``summary_file`` (names under ``output``).

Without ``fsspec`` installed (a job image that only has unijob's runtime wheel) local paths and
mounted volumes still work; URIs need fsspec and its filesystem (s3fs, gcsfs).

Another engine may map the chunks instead of the pool (``run(config, map_chunks=...)``; the
Databricks target's Spark task does, with ``mapInPandas``): the files written are the same.

Exit status: 0 when the errors are within the budget, 1 otherwise (or when nothing could run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from unijob.batch.pool import WorkerError, WorkerPool

SUFFIXES = (".jsonl", ".json", ".txt")
#: Fewest input lines in one task of the pool (few, large tasks: its per-task cost is ~0.1 ms).
BLOCK_LINES = 128
_handler: Any = None
_params: dict[str, Any] = {}

#: ``map_chunks(init_args, chunks)``: yields each chunk's results (``_run_chunk``'s), in order,
#: having called ``_init(*init_args)`` once in whichever process runs the chunks.
ChunkMapper = Callable[[tuple, Iterator[tuple[int, list[str]]]], Iterable[list[tuple[str, Optional[str]]]]]


class _LocalFS:
    """The few fsspec filesystem calls the runner makes, on local paths (used without fsspec)."""

    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)

    @staticmethod
    def find(root: str) -> list[str]:
        return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)

    @staticmethod
    def makedirs(path: str, exist_ok: bool = False) -> None:
        os.makedirs(path, exist_ok=exist_ok)


def _url_to_fs(uri: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        if "://" in uri and not uri.startswith("file://"):
            raise
        return _LocalFS(), uri[len("file://"):] if uri.startswith("file://") else uri
    return fsspec.core.url_to_fs(uri)


def _open(path: str, mode: str, **kw: Any) -> Any:
    """``fsspec.open`` (parent folders made when writing), or plain ``open`` without fsspec."""
    try:
        import fsspec
    except ImportError:
        path = path[len("file://"):] if path.startswith("file://") else path
        if "w" in mode:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, mode.replace("t", ""), **kw)
    return fsspec.open(path, mode, **kw)


def list_inputs(uri: str) -> list[tuple[str, str]]:
    """``[(relative name, full path or URI)]`` of the input files, sorted.

    Raises:
        FileNotFoundError: nothing at ``uri``, or a directory with no input files.
    """
    fs, root = _url_to_fs(uri)
    if not fs.exists(root):
        raise FileNotFoundError(f"batch input {uri} does not exist")
    if not fs.isdir(root):
        return [(Path(root).name, uri)]
    proto = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    out = []
    for f in sorted(fs.find(root)):
        if f.endswith(SUFFIXES):
            rel = f[len(root.rstrip("/")) + 1:]
            out.append((rel, proto + f if proto and not f.startswith(proto) else f))
    if not out:
        raise FileNotFoundError(f"batch input {uri} holds no {', '.join(SUFFIXES)} files")
    return out


def _init(handler_ref: str, base_dir: Optional[str], model: Optional[str], params: dict[str, Any]) -> None:
    global _handler, _params
    from unijob.serve.handler import load_handler
    from unijob.serve.model import materialize

    if base_dir and base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    _handler = load_handler(handler_ref, Path(base_dir) if base_dir else None)
    if _handler.load is not None:
        out = _handler.load(materialize(model))
        if asyncio.iscoroutine(out):
            asyncio.run(out)
    _params = params


def _predict(instances: list[Any]) -> list[Any]:
    h = _handler
    out = h.predict(instances, _params) if h.wants_parameters else h.predict(instances)
    if asyncio.iscoroutine(out):
        out = asyncio.run(out)
    if hasattr(out, "tolist"):
        out = out.tolist()
    out = list(out)
    if len(out) != len(instances):
        raise ValueError(f"predict returned {len(out)} predictions for {len(instances)} instances")
    return out


def _rows(numbered: list[tuple[int, str]]) -> list[tuple[str, Optional[str]]]:
    """``[(line number, text)]`` of non-blank input lines -> ``[(output line, error or None)]`` in
    the same order: one ``predict`` call for them all, then one by one if it raises (so that
    only the failing instances become errors)."""
    parsed: list[Any] = []
    results: list[Optional[tuple[str, Optional[str]]]] = [None] * len(numbered)
    for i, (n, raw) in enumerate(numbered):
        try:
            value = json.loads(raw)
        except ValueError as e:
            msg = f"not JSON: {e}"
            results[i] = (json.dumps({"error": msg, "line": n}), msg)
            continue
        if isinstance(value, dict) and "instance" in value and set(value) <= {"instance", "key"}:
            parsed.append((i, value.get("key"), value["instance"], "key" in value))
        else:
            parsed.append((i, None, value, False))

    def emit(item: tuple[int, Any, Any, bool], prediction: Any = None, error: Optional[str] = None) -> None:
        i, key, _, has_key = item
        row: dict[str, Any] = {"key": key} if has_key else {}
        if error is None:
            row["prediction"] = prediction
        else:
            row.update(error=error, line=numbered[i][0])
        results[i] = (json.dumps(row, separators=(",", ":")), error)

    if parsed:
        try:
            preds = _predict([p[2] for p in parsed])
            for item, pred in zip(parsed, preds):
                emit(item, pred)
        except Exception:  # noqa: BLE001 - isolate the failing instances one by one
            for item in parsed:
                try:
                    emit(item, _predict([item[2]])[0])
                except Exception as e:  # noqa: BLE001 - the user's predict failed on this instance
                    emit(item, error=f"{type(e).__name__}: {e}")
    return results  # type: ignore[return-value] # every slot is set above


def _run_chunk(chunk: tuple[int, list[str]]) -> list[tuple[str, Optional[str]]]:
    """One chunk of consecutive non-blank lines, the first numbered ``first`` -> ``[(output
    line, error or None)]`` in the same order (the task of a :data:`ChunkMapper`)."""
    first, lines = chunk
    return _rows([(first + i, line) for i, line in enumerate(lines)])


def _run_block(task: tuple[int, bytes, int]) -> tuple[bytes, int, list[tuple[int, str]]]:
    """A block of whole input lines as bytes, its first line numbered ``first``, predicted
    ``size`` instances per call -> ``(output bytes, output lines, [(line number, error)])``.

    The pool's task: the parent only cuts the file into blocks and writes the answers, so it
    costs next to nothing beside the workers (a list of line strings each way cost it about a
    quarter of a worker; ``benchmarks/bench_batch.py``). Lines end at ``\\n``, ``\\r\\n`` or
    ``\\r`` and undecodable bytes become U+FFFD, as when the file is read as UTF-8 text with
    universal newlines; blank lines get no output line.
    """
    first, block, size = task
    text = block.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    numbered = [(first + i, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    rows: list[tuple[str, Optional[str]]] = []
    for i in range(0, len(numbered), size):
        rows += _rows(numbered[i:i + size])
    errors = [(n, err) for (n, _), (_, err) in zip(numbered, rows) if err is not None]
    return "".join(line + "\n" for line, _ in rows).encode(), len(rows), errors


def _blocks(path: str, size: int) -> Iterator[tuple[int, bytes, int]]:
    """The tasks of :func:`_run_block` for one input file: at least :data:`BLOCK_LINES` lines
    each (a whole number of ``size`` chunks), in file order, with each block's first line number."""
    per_block = size * max(1, -(-BLOCK_LINES // size))
    with _open(path, "rb") as f:
        first = 1
        while True:
            lines = list(itertools.islice(f, per_block))
            if not lines:
                return
            block = b"".join(lines)
            yield first, block, size
            first += len(lines) + block.count(b"\r") - block.count(b"\r\n")  # lone CRs end lines too


def _chunks_numbered(path: str, size: int) -> Iterator[tuple[int, list[str]]]:
    """Chunks whose lines are consecutive in the file (blank lines end a chunk), so that
    ``first + index`` is each line's number."""
    with _open(path, "rt", encoding="utf-8", errors="replace") as f:
        buf: list[str] = []
        first = 1
        for n, line in enumerate(f, start=1):
            if not line.strip():
                if buf:
                    yield first, buf
                    buf = []
                continue
            if not buf:
                first = n
            buf.append(line)
            if len(buf) >= size:
                yield first, buf
                buf = []
        if buf:
            yield first, buf


Block = tuple[bytes, int, list[tuple[int, str]]]  # what _run_block returns


def _as_blocks(chunk_results: Iterable[list[tuple[str, Optional[str]]]]) -> Iterator[Block]:
    """:func:`_run_chunk` results as :func:`_run_block`'s."""
    for results in chunk_results:
        failed = [(json.loads(line)["line"], err) for line, err in results if err is not None]
        yield "".join(line + "\n" for line, _ in results).encode(), len(results), failed


def run(config: dict[str, Any], map_chunks: Optional[ChunkMapper] = None) -> dict[str, Any]:
    """Run one batch; returns the summary written to ``_SUMMARY.json``.

    ``map_chunks`` maps the chunks instead of this process or its pool (see :data:`ChunkMapper`);
    the handler is then not loaded here.

    Raises:
        FileNotFoundError: no input. HandlerError: the handler reference is bad (with one
            replica). WorkerError: a worker process could not load the handler or model, or died.
    """
    t0 = time.monotonic()
    inputs = list_inputs(config["input"])
    if config.get("shard"):
        index, count = (int(x) for x in config["shard"])
        inputs = inputs[index::count]
    out_root = config["output"].rstrip("/")
    fs_out, out_path = _url_to_fs(out_root)
    fs_out.makedirs(out_path, exist_ok=True)
    replicas = max(1, int(config.get("replicas", 1)))
    size = max(1, int(config.get("instances_per_request", 64)))
    init = (config["handler"], config.get("base_dir"), config.get("model"), dict(config.get("parameters") or {}))
    counts = {"lines": 0, "predictions": 0, "errors": 0}
    errors_path = f"{out_root}/{config.get('errors_file') or 'errors.jsonl'}"
    pool = None
    if map_chunks is None and replicas == 1:
        _init(*init)
    elif map_chunks is None:
        pool = WorkerPool(replicas, _init, init, _run_block)

    def blocks(path: str) -> Iterable[Block]:
        if map_chunks is not None:
            return _as_blocks(map_chunks(init, _chunks_numbered(path, size)))
        if pool is not None:
            return pool.imap(_blocks(path, size))
        return map(_run_block, _blocks(path, size))

    try:
        with _open(errors_path, "wt", encoding="utf-8") as errors:
            for rel, path in inputs:
                with _open(f"{out_root}/{rel}.out", "wb") as out:
                    for data, lines, failed in blocks(path):
                        out.write(data)
                        counts["lines"] += lines
                        counts["predictions"] += lines - len(failed)
                        counts["errors"] += len(failed)
                        for n, err in failed:
                            errors.write(json.dumps({"file": rel, "line": n, "error": err}) + "\n")
                print(f"unijob batch: {rel}: {counts['lines']} lines so far", flush=True)
    finally:
        if pool is not None:
            pool.close()
    budget = float(config.get("max_error_fraction", 0.0))
    fraction = counts["errors"] / counts["lines"] if counts["lines"] else 0.0
    summary = {**counts, "files": len(inputs), "error_fraction": round(fraction, 6), "max_error_fraction": budget,
               "within_budget": fraction <= budget, "seconds": round(time.monotonic() - t0, 3),
               "replicas": replicas, "instances_per_request": size}
    with _open(f"{out_root}/{config.get('summary_file') or '_SUMMARY.json'}", "wt", encoding="utf-8") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m unijob.batch.runner CONFIG_JSON", file=sys.stderr)
        return 2
    config = json.loads(args[0])
    try:
        summary = run(config)
    except (FileNotFoundError, WorkerError) as e:
        print(f"unijob batch: {e}", file=sys.stderr)
        return 1
    print(f"unijob batch: {summary['predictions']} predictions, {summary['errors']} errors in {summary['lines']} lines "
          f"({summary['seconds']} s, {summary['replicas']} replica(s))", flush=True)
    failure = budget_failure(summary, config["output"])
    if failure:
        print(f"unijob batch: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def budget_failure(summary: dict[str, Any], output: str) -> Optional[str]:
    """Why the batch failed (``"FAILED: 3 of 100 lines failed (...) > the error budget ..."``), or
    None when its errors are within ``max_error_fraction``."""
    if summary["within_budget"]:
        return None
    return (f"FAILED: {summary['errors']} of {summary['lines']} lines failed "
            f"({summary['error_fraction']:.2%} > the error budget {summary['max_error_fraction']:.2%}); "
            f"see {output.rstrip('/')}/errors.jsonl")


if __name__ == "__main__":
    sys.exit(main())
