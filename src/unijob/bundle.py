"""What a script job carries to where it runs: its source directory and unijob's runtime wheel.

A script job's code reaches the platform as one bundle (SageMaker's ``sourcedir.tar.gz``, the
Vertex Python package, the Databricks workspace upload, the Kubernetes ConfigMap, the Slurm staging
directory, the Ray ``working_dir``). :func:`runtime_wheel` builds the piece unijob adds to every
bundle: a pure-Python wheel of :mod:`unijob.runtime` (standard library only) plus the runtime envs
of the targets asked for, built from the *installed* unijob, so the version inside the job is the
submitting version and no package index is involved. The job's start command installs it with
:func:`install_argv` (``pip install --no-deps --no-index``) before the user's script runs.

Everything here is deterministic (sorted entries, fixed timestamps, normalised modes), so equal
inputs hash equal and content-addressed upload keys are stable across machines and retries.

Wheel format: PEP 427 (binary distribution format) and PEP 376 ``RECORD``
(https://packaging.python.org/en/latest/specifications/binary-distribution-format/, read 2026-11-29).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import io
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

#: Directories never packed into a source bundle (VCS data, caches, virtual environments).
SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".venv",
                       ".tox", ".ipynb_checkpoints"})

#: Default size limit of a source directory, in bytes (100 MiB). Source bundles are uploaded on
#: every submit whose content changed and unpacked on every node; datasets and checkpoints belong
#: in channels and ``checkpoint.uri``. Targets with a tighter platform limit pass their own
#: (Kubernetes ConfigMaps: 1 MiB, the etcd object limit).
SOURCE_DIR_LIMIT = 100 * 1024 * 1024

#: The core modules the runtime needs, relative to the ``unijob`` package: all standard library only.
_RUNTIME_MODULES = ("_process.py", "errors.py", "registry.py", "runtime_env.py")

#: What :func:`runtime_wheel` adds with ``batch=True``: the batch runner and the handler loader it
#: uses (standard library only; fsspec is used when the image has it).
_BATCH_MODULES = ("batch/__init__.py", "batch/pool.py", "batch/runner.py", "batch/shards.py",
                  "serve/__init__.py", "serve/handler.py", "serve/model.py")

#: ``ZipInfo`` timestamp for every wheel entry: 1980-01-01, the earliest a zip can hold.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _skip_file(name: str) -> bool:
    return name.endswith((".pyc", ".pyo"))


def iter_source_files(source_dir: Union[str, Path]) -> list[tuple[str, Path]]:
    """The files of ``source_dir`` that a bundle carries, as sorted ``(posix relative path, path)``.

    Skips :data:`SKIP_DIRS` and compiled Python files. Symbolic links to files are followed;
    links to directories are not (they could leave the directory or loop).

    Raises:
        FileNotFoundError: ``source_dir`` is not a directory.
    """
    root = Path(source_dir)
    if not root.is_dir():
        raise FileNotFoundError(str(root))
    out: list[tuple[str, Path]] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel = Path(here).relative_to(root)
        for f in sorted(files):
            p = Path(here) / f
            if _skip_file(f) or not p.is_file():
                continue
            out.append(((rel / f).as_posix(), p))
    return sorted(out)


@dataclass(frozen=True)
class SizeReport:
    """The size of a source directory.

    Attributes:
        total_bytes: sum of the sizes of the files a bundle would carry.
        files: number of such files.
        largest: up to five ``(relative path, bytes)``, largest first.
    """

    total_bytes: int
    files: int
    largest: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        """``"123.4 MiB in 56 files; largest: a.bin 100.0 MiB, ..."``."""
        big = ", ".join(f"{name} {_mib(size)}" for name, size in self.largest)
        return f"{_mib(self.total_bytes)} in {self.files} files" + (f"; largest: {big}" if big else "")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def source_size(source_dir: Union[str, Path]) -> SizeReport:
    """Measure what a bundle of ``source_dir`` carries (see :func:`iter_source_files`)."""
    sizes = [(rel, p.stat().st_size) for rel, p in iter_source_files(source_dir)]
    largest = tuple(sorted(sizes, key=lambda s: (-s[1], s[0]))[:5])
    return SizeReport(sum(s for _, s in sizes), len(sizes), largest)


def check_source_size(source_dir: Union[str, Path], *, limit: int = SOURCE_DIR_LIMIT,
                      why: str = "source bundles are uploaded on every changed submit and unpacked on "
                                 "every node; put data in inputs (channels) and checkpoint.uri") -> SizeReport:
    """Refuse a source directory larger than ``limit`` bytes.

    Returns:
        the :class:`SizeReport` when within the limit.

    Raises:
        SpecError: at ``source_dir`` with the size, the largest files, the limit and ``why``.
    """
    report = source_size(source_dir)
    if report.total_bytes > limit:
        from unijob.errors import SpecError

        raise SpecError.at(("source_dir",), f"the source directory {source_dir} is {report.describe()}; "
                                            f"the limit is {_mib(limit)} ({why})")
    return report


def pack_dir(source_dir: Union[str, Path], extra: Optional[Mapping[str, Union[bytes, Path]]] = None) -> bytes:
    """A deterministic gzip tarball of ``source_dir`` (entries relative to it), plus ``extra`` files.

    Args:
        source_dir: the directory to pack (see :func:`iter_source_files` for what is skipped).
        extra: archive name -> bytes or a file to read; replaces a packed file of the same name
            (e.g. ``requirements.txt`` from outside the directory, or the runtime wheel).

    Returns:
        the ``.tar.gz`` bytes: PAX format, entries sorted, mtimes 0, owner 0/0, modes 0o755 for
        directories and executables else 0o644, gzip header without name or mtime.

    Raises:
        FileNotFoundError: ``source_dir`` does not exist.
    """
    files: dict[str, Union[bytes, Path]] = dict(iter_source_files(source_dir))
    for name, content in (extra or {}).items():
        files[name] = content
    dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, Optional[Union[bytes, Path]]]] = [(d, None) for d in dirs]
        entries += sorted(files.items(), key=lambda e: e[0])
        for name, content in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            executable = not isinstance(content, bytes) and os.access(content, os.X_OK)
            info.size = len(data)
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ---- the runtime wheel ------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeWheel:
    """unijob's runtime as a wheel file, in memory.

    Attributes:
        filename: the PEP 427 file name, ``unijob-<version>+runtime.<hash12>-py3-none-any.whl``;
            the local version label carries the content hash, so a changed runtime is a new
            version and pip replaces an older one in a reused environment.
        data: the wheel's bytes.
        sha256: hex sha256 of ``data`` (content-addressed upload keys use it).
        version: the unijob version it was built from (``unijob.__version__``).
        targets: the targets whose runtime envs it carries.
    """

    filename: str
    data: bytes
    sha256: str
    version: str
    targets: tuple[str, ...]

    def write(self, directory: Union[str, Path]) -> Path:
        """Write the wheel into ``directory`` (created if needed); returns its path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / self.filename
        if not (path.is_file() and path.read_bytes() == self.data):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(self.data)
            os.replace(tmp, path)
        return path


def install_argv(wheel_path: str, python: str = "python") -> list[str]:
    """The argv that installs the runtime wheel inside a job, with no package index and no deps.

    ``--no-deps --no-index``: the runtime needs only the standard library, and no index is asked,
    so nothing can be fetched or impersonated (the name ``unijob`` on a public index is not ours to
    trust). ``--force-reinstall`` replaces a different unijob already in the image with the
    submitting version.
    """
    return [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--no-index", "--force-reinstall", "--no-warn-script-location", wheel_path]


def _runtime_env_modules(targets: Optional[Iterable[str]]) -> dict[str, str]:
    """target name -> ``module:Class`` of its registered runtime env (every one when ``targets`` is None)."""
    from unijob import registry

    found = dict(registry.entry_points(registry.RUNTIME_GROUP))
    if targets is None:
        return dict(sorted(found.items()))
    return {t: found[t] for t in sorted(set(targets)) if t in found}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def runtime_wheel(targets: Optional[Sequence[str]] = None, *, batch: bool = False) -> RuntimeWheel:
    """Build the runtime wheel from the installed unijob (pure function of the installed files).

    It holds ``unijob/__init__.py`` (a minimal one: the version, no API), ``unijob/runtime/``,
    the standard-library core modules the runtime imports, and for each target in ``targets``
    (default: every installed one) the module of its ``unijob.runtime_envs`` entry point, declared
    again under that group in the wheel's ``entry_points.txt`` so :func:`unijob.runtime.context`
    finds it inside the job.

    Args:
        targets: target names whose runtime envs to include; unknown names are ignored (the local
            target has none).
        batch: also carry the batch-prediction runner (:mod:`unijob.batch.runner`,
            :mod:`unijob.batch.shards`) and the handler loader (:mod:`unijob.serve.handler`,
            :mod:`unijob.serve.model`), for targets that run batch prediction as a job.

    Returns:
        the :class:`RuntimeWheel`.
    """
    import unijob

    pkg = Path(unijob.__file__).resolve().parent
    version = unijob.__version__
    payload: dict[str, bytes] = {}
    payload["unijob/__init__.py"] = (
        '"""unijob\'s runtime, as shipped into jobs by the runtime wheel (unijob.bundle.runtime_wheel).\n\n'
        'Only unijob.runtime and what it needs are here; the SDK and CLI are not."""\n\n'
        f'__version__ = "{version}"\n').encode()
    for mod in _RUNTIME_MODULES:
        payload[f"unijob/{mod}"] = (pkg / mod).read_bytes()
    for f in sorted((pkg / "runtime").glob("*.py")):
        payload[f"unijob/runtime/{f.name}"] = f.read_bytes()
    for mod in _BATCH_MODULES if batch else ():
        payload[f"unijob/{mod}"] = (pkg / mod).read_bytes()
    envs = _runtime_env_modules(targets)
    entry_lines = []
    for name, value in envs.items():
        module = value.partition(":")[0]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            continue
        rel = module.replace(".", "/") + ".py"
        payload[rel] = Path(spec.origin).read_bytes()
        parts = module.split(".")
        # Sub-packages get an empty __init__ (the adapter's own __init__ may import its SDK side);
        # the top level (``unijob_adapters``) stays a namespace package, as installed.
        for i in range(2, len(parts)):
            payload.setdefault("/".join(parts[:i]) + "/__init__.py", b"")
        entry_lines.append(f"{name} = {value}")
    content_hash = sha256(b"".join(n.encode() + b"\0" + hashlib.sha256(d).digest() for n, d in sorted(payload.items())))
    wheel_version = f"{version}+runtime.{content_hash[:12]}"
    dist_info = f"unijob-{wheel_version}.dist-info"
    payload[f"{dist_info}/METADATA"] = (
        "Metadata-Version: 2.1\nName: unijob\n"
        f"Version: {wheel_version}\n"
        "Summary: unijob's runtime (rank, world size, checkpoints, preemption notice), shipped into jobs\n"
        "Requires-Python: >=3.8\n").encode()
    payload[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: unijob.bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n").encode()
    if entry_lines:
        payload[f"{dist_info}/entry_points.txt"] = ("[unijob.runtime_envs]\n" + "\n".join(entry_lines) + "\n").encode()
    payload[f"{dist_info}/top_level.txt"] = ("\n".join(sorted({n.split("/")[0] for n in payload if "/" in n and not n.startswith(dist_info)})) + "\n").encode()
    record_name = f"{dist_info}/RECORD"
    record = "\n".join(_record_line(n, d) for n, d in sorted(payload.items())) + f"\n{record_name},,\n"
    payload[record_name] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # dist-info last, as PEP 427 recommends (RECORD very last).
        order = sorted(payload, key=lambda n: (n.startswith(dist_info), n == record_name, n))
        for name in order:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, payload[name])
    data = buf.getvalue()
    return RuntimeWheel(filename=f"unijob-{wheel_version}-py3-none-any.whl", data=data, sha256=sha256(data),
                        version=version, targets=tuple(envs))
