"""Where checkpoint bytes go: a local POSIX directory (temp name, fsync, atomic rename) or an
fsspec file system (manifest written last). Used by :mod:`unijob.runtime.checkpoint`; not public.

Standard library only, except :mod:`fsspec`, imported when a remote URI is first used.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, Union

from unijob._process import pid_exists

#: Chunk size for streaming reads and writes (bytes).
CHUNK = 16 << 20
#: Ask the kernel to start writing back every this many bytes written.
_WRITEBACK_EVERY = 64 << 20
MANIFEST = "manifest.json"
DATA = "data"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(obj: Any) -> Iterator[memoryview]:
    """Chunks of a bytes-like object or of a file's contents (16 MiB each, one reused buffer)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        mv = memoryview(obj).cast("B")
        for i in range(0, len(mv), CHUNK):
            yield mv[i:i + CHUNK]
        return
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    with open(obj, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return
            yield mv[:n]


class _LocalStore:
    """A checkpoint root on a local (POSIX) file system: atomic rename, fsync."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.local = True

    def uri(self, name: str) -> str:
        return str(self.root / name)

    def path(self, name: str) -> Optional[Path]:
        return self.root / name

    def names(self) -> list[str]:
        try:
            return os.listdir(self.root)
        except FileNotFoundError:
            return []

    def read_manifest(self, name: str) -> Optional[bytes]:
        try:
            return (self.root / name / MANIFEST).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open_data(self, name: str, rel: str) -> IO[bytes]:
        return open(self.root / name / DATA / rel, "rb")

    def write(self, name: str, sources: list[tuple[str, Any]], make_manifest: Any) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.root.parent)  # the new root's own entry survives a crash too
        tmp = self.root / f".tmp-{name}-{os.getpid()}-{_secrets.token_hex(4)}"
        try:
            (tmp / DATA).mkdir(parents=True)
            dirs = {tmp, tmp / DATA}
            records = []
            for rel, src in sources:
                dst = tmp / DATA / rel
                if not dst.parent.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    d = dst.parent
                    while d != tmp and d not in dirs:
                        dirs.add(d)
                        d = d.parent
                records.append(_write_local_file(dst, src, rel))
            manifest = make_manifest(records)
            fd = os.open(tmp / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, manifest)
                os.fsync(fd)
            finally:
                os.close(fd)
            for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                _fsync_dir(d)
            final = self.root / name
            old = None
            if final.exists():
                old = self.root / f".old-{name}-{os.getpid()}-{_secrets.token_hex(4)}"
                os.rename(final, old)
            os.rename(tmp, final)
            _fsync_dir(self.root)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        trash = self.root / f".old-{name}-{os.getpid()}-{_secrets.token_hex(4)}"
        try:
            os.rename(self.root / name, trash)  # disappears atomically, then is deleted
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def sweep(self) -> None:
        """Delete temporary directories left by saves of processes that no longer run."""
        for n in self.names():
            if not (n.startswith(".tmp-") or n.startswith(".old-")):
                continue
            try:
                pid = int(n.rsplit("-", 2)[-2])
            except (ValueError, IndexError):
                continue
            if pid == os.getpid() or _alive(pid):
                continue
            shutil.rmtree(self.root / n, ignore_errors=True)


_alive = pid_exists


_hasher: Optional[ThreadPoolExecutor] = None
_hasher_lock = threading.Lock()


def _hash_pool() -> ThreadPoolExecutor:
    global _hasher
    with _hasher_lock:
        if _hasher is None:
            _hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unijob-sha256")
        return _hasher


def _stream(src: Any, write: Callable[[memoryview], Any]) -> tuple[int, str]:
    """Feed ``src`` to ``write`` chunk by chunk, hashing each chunk in a second thread at the same
    time (hashlib and os.write both release the GIL). Returns (bytes, sha256 hex)."""
    h = hashlib.sha256()
    size = 0
    pool = None
    for chunk in _chunks(src):
        if len(chunk) >= (1 << 20):
            pool = pool or _hash_pool()
            fut = pool.submit(h.update, chunk)
            write(chunk)
            fut.result()
        else:
            h.update(chunk)
            write(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def _write_local_file(dst: Path, src: Any, rel: str) -> dict[str, Any]:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    written = [0, 0]  # bytes written, bytes handed to writeback

    def write(chunk: memoryview) -> None:
        view = chunk
        while view:
            n = os.write(fd, view)
            view = view[n:]
        written[0] += len(chunk)
        if written[0] - written[1] >= _WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            # Start writeback of what is written so far, so the final fsync has little left.
            os.posix_fadvise(fd, written[1], written[0] - written[1], os.POSIX_FADV_DONTNEED)
            written[1] = written[0]

    try:
        size, digest = _stream(src, write)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"path": rel, "size": size, "sha256": digest}


class _FsspecStore:
    """A checkpoint root on an fsspec file system; the manifest written last marks completeness."""

    def __init__(self, fs: Any, root: str, protocol: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.protocol = protocol
        self.local = False

    def _p(self, *parts: str) -> str:
        return "/".join((self.root,) + parts)

    def uri(self, name: str) -> str:
        return self.fs.unstrip_protocol(self._p(name))

    def path(self, name: str) -> Optional[Path]:
        return None

    def names(self) -> list[str]:
        try:
            entries = self.fs.ls(self.root, detail=False)
        except (FileNotFoundError, OSError):
            return []
        return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def read_manifest(self, name: str) -> Optional[bytes]:
        try:
            return self.fs.cat_file(self._p(name, MANIFEST))
        except (FileNotFoundError, OSError):
            return None

    def open_data(self, name: str, rel: str) -> IO[bytes]:
        return self.fs.open(self._p(name, DATA, rel), "rb")

    def write(self, name: str, sources: list[tuple[str, Any]], make_manifest: Any) -> None:
        base = self._p(name)
        if self.fs.exists(base):  # a torn or older save of the same step: replace it
            self.remove(name)
        records = []
        for rel, src in sources:
            with self.fs.open(self._p(name, DATA, rel), "wb") as f:
                size, digest = _stream(src, f.write)
            records.append({"path": rel, "size": size, "sha256": digest})
        self.fs.pipe_file(self._p(name, MANIFEST), make_manifest(records))

    def remove(self, name: str) -> None:
        try:
            self.fs.rm_file(self._p(name, MANIFEST))  # first: it is no longer complete
        except (FileNotFoundError, OSError):
            pass
        try:
            self.fs.rm(self._p(name), recursive=True)
        except (FileNotFoundError, OSError):
            pass

    def sweep(self) -> None:
        return None


def _store(uri: Union[str, "os.PathLike[str]"]) -> Any:
    s = os.fspath(uri)
    if s.startswith("file://"):
        return _LocalStore(Path(s[len("file://"):]))
    if "://" not in s:
        return _LocalStore(Path(s))
    import fsspec

    fs, root = fsspec.core.url_to_fs(s)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return _FsspecStore(fs, root, protocol)
