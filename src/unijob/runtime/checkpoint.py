"""Atomic, verified, pruned checkpoints: :class:`Checkpointer`.

Layout under the checkpoint root (a local directory or any fsspec URI)::

    <root>/step-000000000042/manifest.json     # written last: step, kind, time, sha256 + size per file
    <root>/step-000000000042/data/...          # the payload: one file, or a directory tree

Guarantees:

- **A torn write never becomes the latest.** Locally a checkpoint is written under a temporary
  name (``.tmp-step-...``), every file is fsynced, ``manifest.json`` is written and fsynced last,
  the directory is fsynced and then renamed to ``step-<%012d>`` (an atomic rename on POSIX file
  systems), and the root directory is fsynced. On fsspec URIs (``s3://``, ``gs://``, ``memory://``)
  where rename is not atomic, the payload is written in place and ``manifest.json`` written last
  marks the checkpoint complete; a step without a manifest is ignored.
- **Verified on load.** Every file's sha256 is checked; when the newest checkpoint is corrupt,
  ``load()`` warns and falls back to the previous good one.
- **Pruned.** After each save only the newest ``keep`` complete checkpoints are kept.
- **Fast.** Data is streamed in 16 MiB chunks, hashed on the way, and written back to disk while
  it is still being written (``posix_fadvise(DONTNEED)`` starts writeback early), with one fsync per
  file at the end: ``benchmarks/bench_checkpoint.py`` compares it with ``dd conv=fdatasync``.

Only global rank 0 saves by default (``save(..., all_ranks=False)``): on the other ranks ``save``
does nothing and returns ``None``. Pass ``all_ranks=True`` to save from every rank, giving each rank
its own ``uri`` (e.g. ``f"{base}/rank-{ctx.rank}"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from unijob.runtime.storage import CHUNK, _store

FORMAT = "unijob-checkpoint/1"
BYTES_NAME = "checkpoint.bin"
_STEP_RE = re.compile(r"^step-(\d{12})$")

Payload = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


class CheckpointCorrupt(Exception):
    """A checkpoint's files do not match its manifest (missing file, wrong size or sha256)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One complete checkpoint.

    Attributes:
        step: the step number it was saved with.
        uri: the checkpoint directory (local path or fsspec URI).
        path: the local directory, or ``None`` on a remote store.
        time: when the save completed (POSIX seconds).
        kind: ``"bytes"``, ``"file"`` or ``"dir"`` (what was passed to ``save``).
        size: payload bytes.
        files: payload file paths relative to the checkpoint's ``data/`` directory.
    """

    step: int
    uri: str
    path: Optional[Path]
    time: float
    kind: str
    size: int
    files: tuple[str, ...]


def _step_name(step: int) -> str:
    return f"step-{step:012d}"


def _sources(obj: Payload) -> tuple[str, list[tuple[str, Any]]]:
    """(kind, [(relative posix path, bytes-like or Path)]) for a save payload."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return "bytes", [(BYTES_NAME, obj)]
    if not isinstance(obj, (str, os.PathLike)):
        raise TypeError(f"save() takes bytes, a file path or a directory path, not {type(obj).__name__}")
    p = Path(obj)
    if p.is_file():
        return "file", [(p.name, p)]
    if p.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
            dirnames.sort()
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                if full.is_file():
                    files.append((full.relative_to(p).as_posix(), full))
        return "dir", files
    raise FileNotFoundError(f"nothing to checkpoint at {p} (no such file or directory)")


class Checkpointer:
    """Save and load step-numbered checkpoints under one root.

    Args:
        uri: local directory, ``file://`` URI or fsspec URI (``s3://bucket/ckpt``, ``gs://...``,
            ``memory://...``). Default: ``context().checkpoint_dir`` (the local directory the
            platform syncs), else ``context().checkpoint_uri``; when the job has neither (a plain
            ``python train.py``), a fresh temporary directory, with a warning, so a run never
            resumes another run's checkpoints by accident.
        keep: how many complete checkpoints to keep (>= 1); older ones are deleted after a save.
        ctx: the :class:`~unijob.runtime.Context` (default :func:`~unijob.runtime.context`); its
            ``rank`` decides whether ``save`` writes.

    Raises:
        ValueError: ``keep < 1``.
    """

    def __init__(self, uri: Union[str, "os.PathLike[str]", None] = None, keep: int = 3, *, ctx: Any = None) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if ctx is None:
            from unijob.runtime.environment import context

            ctx = context()
        if uri is None:
            uri = ctx.checkpoint_dir or ctx.checkpoint_uri
        if uri is None:
            uri = tempfile.mkdtemp(prefix="unijob-checkpoints-")
            warnings.warn(f"unijob.runtime: no checkpoint location (UNIJOB_CHECKPOINT_DIR/UNIJOB_CHECKPOINT_URI "
                          f"unset); checkpoints go to {uri} and are not resumed by another run",
                          RuntimeWarning, stacklevel=2)
        self.uri = os.fspath(uri)
        self.keep = keep
        self.rank = int(ctx.rank)
        self._store = _store(self.uri)

    def __repr__(self) -> str:
        return f"Checkpointer({self.uri!r}, keep={self.keep})"

    # ---- saving -----------------------------------------------------------------------------

    def save(self, obj: Payload, step: int, *, all_ranks: bool = False) -> Optional[CheckpointInfo]:
        """Save ``obj`` as checkpoint ``step`` (replacing an earlier save of the same step).

        Args:
            obj: bytes-like; or a path (``str``/``PathLike``) to a file or to a directory, whose
                files are copied (symlinked files are followed; empty directories are not kept).
            step: a non-negative integer below 10**12; the newest checkpoint is the highest step.
            all_ranks: save on every rank; by default only global rank 0 saves.

        Returns:
            The saved checkpoint, or ``None`` on a rank that does not save.

        Raises:
            TypeError: ``obj`` is not bytes or a path. FileNotFoundError: the path does not exist.
            ValueError: ``step`` out of range. OSError: the write failed (nothing became latest).
        """
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 10**12:
            raise ValueError(f"step must be an integer from 0 to 10**12-1, got {step!r}")
        if self.rank != 0 and not all_ranks:
            return None
        kind, sources = _sources(obj)
        name = _step_name(step)
        saved_at: list[float] = []

        def make_manifest(records: list[dict[str, Any]]) -> bytes:
            saved_at.append(time.time())
            return json.dumps({"format": FORMAT, "step": step, "kind": kind, "time": saved_at[0],
                               "host": socket.gethostname(), "rank": self.rank, "files": records},
                              indent=1, sort_keys=True).encode()

        self._store.write(name, sources, make_manifest)
        info = self._info(name)
        self._prune()
        if info is None:  # pragma: no cover - the store lost what it just wrote
            raise OSError(f"checkpoint step {step} vanished from {self.uri} right after it was written")
        return info

    def _prune(self) -> None:
        for step in self.steps()[:-self.keep]:
            self._store.remove(_step_name(step))
        self._store.sweep()

    # ---- listing ----------------------------------------------------------------------------

    def _manifest(self, name: str) -> Optional[dict[str, Any]]:
        raw = self._store.read_manifest(name)
        if raw is None:
            return None
        try:
            m = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), list):
            return None
        return m

    def _info(self, name: str) -> Optional[CheckpointInfo]:
        m = self._manifest(name)
        if m is None:
            return None
        files = m["files"]
        return CheckpointInfo(step=int(m["step"]), uri=self._store.uri(name), path=self._store.path(name),
                              time=float(m.get("time", 0.0)), kind=str(m.get("kind", "bytes")),
                              size=sum(int(f["size"]) for f in files), files=tuple(f["path"] for f in files))

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints (those with a readable manifest), ascending.

        Temporary directories of unfinished saves and steps without a manifest are not listed.
        Files are not hashed here; :meth:`load` verifies them.
        """
        out = []
        for n in self._store.names():
            m = _STEP_RE.match(n)
            if m and self._manifest(n) is not None:
                out.append(int(m.group(1)))
        return sorted(out)

    def latest(self, *, verify: bool = False) -> Optional[CheckpointInfo]:
        """The newest complete checkpoint, or ``None`` when there is none.

        Args:
            verify: also check every file's sha256 and skip corrupt checkpoints (with a warning);
                this reads the whole checkpoint.
        """
        for step in reversed(self.steps()):
            info = self._info(_step_name(step))
            if info is None:
                continue
            if verify:
                try:
                    self._verify(info)
                except CheckpointCorrupt as e:
                    warnings.warn(f"unijob.runtime: {e}; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
                    continue
            return info
        return None

    def info(self, step: int) -> CheckpointInfo:
        """The checkpoint saved as ``step``.

        Raises:
            FileNotFoundError: no complete checkpoint with that step.
        """
        info = self._info(_step_name(step))
        if info is None:
            raise FileNotFoundError(f"no complete checkpoint for step {step} under {self.uri}")
        return info

    # ---- loading ----------------------------------------------------------------------------

    def _candidates(self, step: Optional[int]) -> list[CheckpointInfo]:
        if step is not None:
            return [self.info(step)]
        infos = [i for i in (self._info(_step_name(s)) for s in reversed(self.steps())) if i is not None]
        if not infos:
            raise FileNotFoundError(f"no checkpoint under {self.uri}")
        return infos

    def _verify(self, info: CheckpointInfo) -> None:
        m = self._manifest(_step_name(info.step))
        if m is None:
            raise CheckpointCorrupt(f"checkpoint step {info.step} at {info.uri} lost its manifest")
        for rec in m["files"]:
            self._read_verified(info, rec, sink=None)

    def _read_verified(self, info: CheckpointInfo, rec: dict[str, Any], sink: Any) -> None:
        name = _step_name(info.step)
        h = hashlib.sha256()
        size = 0
        try:
            with self._store.open_data(name, rec["path"]) as f:
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    size += len(chunk)
                    if sink is not None:
                        sink(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CheckpointCorrupt(f"checkpoint step {info.step} at {info.uri} is corrupt: "
                                    f"file {rec['path']} is missing") from None
        if size != int(rec["size"]) or h.hexdigest() != rec["sha256"]:
            raise CheckpointCorrupt(self._mismatch(info, rec, size, h.hexdigest()))

    def _read_whole(self, info: CheckpointInfo, rec: dict[str, Any]) -> bytes:
        try:
            with self._store.open_data(_step_name(info.step), rec["path"]) as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CheckpointCorrupt(f"checkpoint step {info.step} at {info.uri} is corrupt: "
                                    f"file {rec['path']} is missing") from None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != int(rec["size"]) or digest != rec["sha256"]:
            raise CheckpointCorrupt(self._mismatch(info, rec, len(data), digest))
        return data

    @staticmethod
    def _mismatch(info: CheckpointInfo, rec: dict[str, Any], size: int, digest: str) -> str:
        return (f"checkpoint step {info.step} at {info.uri} is corrupt: file {rec['path']} has {size} bytes "
                f"and sha256 {digest[:12]}..., the manifest says {rec['size']} bytes and "
                f"{str(rec['sha256'])[:12]}...")

    def load(self, step: Optional[int] = None) -> bytes:
        """The payload of a checkpoint saved from bytes or from a single file, verified.

        Args:
            step: which checkpoint; default the newest good one: when the newest is corrupt, a
                warning is issued and the previous one is tried, and so on.

        Raises:
            FileNotFoundError: no checkpoint (or none for ``step``).
            CheckpointCorrupt: ``step`` was given and is corrupt, or every checkpoint is.
            ValueError: the checkpoint is a directory (use :meth:`load_to`).
        """
        errors = []
        for info in self._candidates(step):
            if info.kind == "dir" or len(info.files) != 1:
                raise ValueError(f"checkpoint step {info.step} holds a directory; use load_to(dest_dir)")
            m = self._manifest(_step_name(info.step))
            if m is None:
                continue
            try:
                data = self._read_whole(info, m["files"][0])
            except CheckpointCorrupt as e:
                if step is not None:
                    raise
                warnings.warn(f"unijob.runtime: {e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
                errors.append(str(e))
                continue
            return data
        raise CheckpointCorrupt("no good checkpoint under " + self.uri + ": " + "; ".join(errors))

    def load_to(self, dest_dir: Union[str, "os.PathLike[str]"], step: Optional[int] = None) -> Path:
        """Copy a checkpoint's payload into ``dest_dir`` (created), verifying every file.

        Returns:
            For a directory checkpoint, ``dest_dir`` (holding the saved tree); for a bytes or file
            checkpoint, the path of the file inside ``dest_dir`` (the original file name, or
            ``checkpoint.bin`` for bytes).

        Raises:
            FileNotFoundError, CheckpointCorrupt: as :meth:`load` (same fallback rule).
        """
        dest = Path(dest_dir)
        errors = []
        for info in self._candidates(step):
            m = self._manifest(_step_name(info.step))
            if m is None:
                continue
            written: list[Path] = []
            try:
                for rec in m["files"]:
                    target = dest / rec["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        written.append(target)
                        self._read_verified(info, rec, sink=out.write)
            except CheckpointCorrupt as e:
                for p in written:
                    p.unlink(missing_ok=True)
                if step is not None:
                    raise
                warnings.warn(f"unijob.runtime: {e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
                errors.append(str(e))
                continue
            return dest if info.kind == "dir" else dest / info.files[0]
        raise CheckpointCorrupt("no good checkpoint under " + self.uri + ": " + "; ".join(errors))

