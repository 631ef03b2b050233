"""Pack a script job's source directory as a deterministic ``sourcedir.tar.gz``.

Deterministic: entries sorted, mtimes zeroed, owner 0/0, modes normalised (0o755 for dirs and
executables, else 0o644), gzip header without name or mtime; so equal trees hash equal and the
S3 key (content-addressed by sha256) is stable across machines and retries. ``__pycache__``,
``.git`` and ``*.pyc`` are skipped. A ``requirements`` file outside the directory's root is added
as ``requirements.txt``, which the SageMaker training toolkit installs before running the script.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Optional

_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".venv"}


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(source_dir: Path, requirements: Optional[Path] = None) -> bytes:
    """The gzip tarball of ``source_dir`` (entries relative to it), as bytes.

    Raises:
        FileNotFoundError: ``source_dir`` does not exist.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(str(source_dir))
    entries: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        rel_root = Path(root).relative_to(source_dir)
        for d in dirs:
            entries.append(((rel_root / d).as_posix(), Path(root) / d))
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            entries.append(((rel_root / f).as_posix(), Path(root) / f))
    if requirements is not None:
        req = Path(requirements).resolve()
        inside = req.parent == source_dir.resolve() and req.name == "requirements.txt"
        if not inside:
            entries = [e for e in entries if e[0] != "requirements.txt"] + [("requirements.txt", req)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in sorted(entries, key=lambda e: e[0]):
            _add(tar, path, arcname)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
