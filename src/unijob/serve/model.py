"""Turn a model location into a local directory the handler's ``load`` can read.

* a local directory (or ``file://`` URI) is used as it is;
* a local ``.tar.gz`` / ``.tgz`` (SageMaker's ``model.tar.gz`` layout) is extracted, with the
  ``data`` filter (no absolute paths, no links out of the directory), into a fresh directory;
* a remote URI (``s3://``, ``gs://``, ``abfs://``... anything fsspec knows) is copied first, as
  Vertex does with ``AIP_STORAGE_URI`` and SageMaker with ``ModelDataUrl``, then treated as above.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

ARCHIVES = (".tar.gz", ".tgz", ".tar")


def _cache_root() -> Path:
    root = Path(os.environ.get("UNIJOB_MODEL_CACHE") or tempfile.gettempdir()) / "unijob-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _extract(archive: Path) -> Path:
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = _cache_root() / f"{archive.name.split('.')[0]}-{key}"
    if (dest / ".complete").exists():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=_cache_root(), prefix=".extract-"))
    try:
        with tarfile.open(archive) as tf:
            try:
                tf.extractall(tmp, filter="data")
            except TypeError:  # Python < 3.10.12 has no filter argument
                tf.extractall(tmp)  # noqa: S202 - archives come from the user's own model location
    except BaseException as e:
        import gzip
        import shutil
        import zlib

        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)):
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "could not be opened successfully" in text:  # tarfile tried every compression
                text = "not a tar archive (plain, gzip, bzip2 or xz)"
            raise ValueError(f"model archive {archive} cannot be extracted: {text}") from None
        raise
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, dest)
    except OSError:  # another replica extracted it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def materialize(model: Optional[str]) -> Optional[Path]:
    """A local directory holding the model at ``model``, or None for None.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: an archive that is not a readable tar (corrupt, truncated, or a member that
            would land outside the directory); nothing is left behind.
        ImportError: a remote URI whose fsspec filesystem is not installed (``gcsfs``, ``s3fs``).
    """
    if not model:
        return None
    if model.startswith("file://"):
        model = model[len("file://"):]
    if "://" not in model:
        path = Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model location {model} does not exist")
        if path.is_file() and path.name.endswith(ARCHIVES):
            return _extract(path)
        return path if path.is_dir() else path.parent
    import fsspec

    fs, root = fsspec.core.url_to_fs(model)
    dest = Path(tempfile.mkdtemp(dir=_cache_root(), prefix="remote-"))
    if fs.isdir(root):
        fs.get(root.rstrip("/") + "/", str(dest), recursive=True)
        return dest
    local = dest / Path(root).name
    fs.get(root, str(local))
    return _extract(local) if local.name.endswith(ARCHIVES) else dest
