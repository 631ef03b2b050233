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

What a bundle leaves out is decided here and nowhere else: :data:`SKIP_DIRS` (VCS data, caches,
virtual environments), compiled Python files, and what a local run of the spec writes inside its
source directory (:func:`local_outputs`: ``output``, ``checkpoint.uri``, ``batch.output``), so a
source directory after ``unijob submit -t local`` bundles byte for byte as a clean one.

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
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

#: Directories never packed into a source bundle (VCS data, caches, virtual environments, and
#: ``.unijob``: the name unijob's ``.gitignore`` reserves for local state; unijob itself keeps its
#: state under :func:`unijob.paths.home`, outside source directories).
SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".venv",
                       ".tox", ".ipynb_checkpoints", ".unijob"})

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


def written_locations(data: Any) -> tuple[str, ...]:
    """``output``, ``checkpoint.uri`` and ``batch.output`` of a spec file's raw data (a mapping), where
    they are strings: the locations a local run of that file writes."""
    if not isinstance(data, Mapping):
        return ()
    ck, batch = data.get("checkpoint"), data.get("batch")
    found = [data.get("output"), ck.get("uri") if isinstance(ck, Mapping) else None,
             batch.get("output") if isinstance(batch, Mapping) else None]
    return tuple(w for w in found if isinstance(w, str))


def _written_locations(spec: Any) -> list[str]:
    """The locations a local run of ``spec``, or of the file it was read from, writes (paths or URIs)."""
    out = [spec.output] if spec.output else []
    if spec.checkpoint:
        out.append(spec.checkpoint.uri)
    if spec.batch is not None:
        out.append(spec.batch.output)
    return out + list(getattr(spec, "_file_writes", ()))


def _read_locations(spec: Any) -> list[str]:
    """The local paths and URIs ``spec`` reads (never skipped, nor any directory holding one)."""
    out = [p for p in (spec.script, spec.requirements) if p]
    out += list(spec.inputs.values())
    if spec.batch is not None:
        out += [spec.batch.input] + ([spec.batch.model] if spec.batch.model else [])
    if spec.endpoint is not None:
        out += [v.model for v in spec.endpoint.resolved_variants() if v.model]
    return out


def local_outputs(spec: Any, root: Union[str, Path, None] = None) -> tuple[str, ...]:
    """What a local run of ``spec`` leaves inside ``root``, which a bundle of ``root`` leaves out.

    The local target writes ``output``, ``checkpoint.uri`` and ``batch.output`` where they point
    (relative paths resolve against the spec's directory, :func:`unijob.local.plan.local_path`);
    the quickstart's ``./output`` and ``./checkpoints`` sit inside its source directory. Also counted:
    the same fields of the spec's file as written (:func:`written_locations`, kept as
    ``JobSpec._file_writes`` by :func:`unijob.loading.load_spec` and
    :func:`unijob.pipeline.steps.build_spec`), for when a pipeline step's ``with`` or a caller's
    ``model_copy`` replaced them with remote URIs: a local run of that file wrote there. The list
    depends on the spec only, not on what exists, so the plans of a clean directory and of one after
    a local run are equal. Not counted: what a local run of *another* spec file wrote.

    Args:
        spec: a :class:`unijob.spec.JobSpec`.
        root: the directory being bundled; default ``spec.source_path``.

    Returns:
        sorted POSIX paths relative to ``root`` (no ``.``: a location that is ``root`` itself, or
        outside it, is not listed), without any location holding something the spec reads (its
        script, requirements, inputs, batch input or model, endpoint models).
    """
    from unijob.local.plan import local_path

    base = root if root is not None else spec.source_path
    if base is None:
        return ()
    try:
        base = Path(base).resolve()
    except (OSError, RuntimeError):
        return ()

    def resolved(locations: Iterable[str]) -> list[Path]:
        out = []
        for uri in locations:
            p = local_path(spec, uri)
            if p is None:
                continue
            try:
                out.append(Path(p).resolve())
            except (OSError, RuntimeError):
                continue
        return out

    reads = resolved(_read_locations(spec))
    found = set()
    for p in resolved(_written_locations(spec)):
        if p == base or not p.is_relative_to(base):
            continue
        if any(r == p or r.is_relative_to(p) for r in reads):
            continue
        found.add(p.relative_to(base).as_posix())
    return tuple(sorted(found))


def iter_source_files(source_dir: Union[str, Path], exclude: Iterable[str] = ()) -> list[tuple[str, Path]]:
    """The files of ``source_dir`` that a bundle carries, as sorted ``(posix relative path, path)``.

    Skips :data:`SKIP_DIRS`, compiled Python files, and ``exclude`` (POSIX paths relative to
    ``source_dir``, files or whole directories; :func:`local_outputs` gives a spec's). Symbolic
    links to files are followed; links to directories are not (they could leave the directory or loop).

    Raises:
        FileNotFoundError: ``source_dir`` is not a directory.
    """
    root = Path(source_dir)
    if not root.is_dir():
        raise FileNotFoundError(str(root))
    skip = frozenset(exclude)
    out: list[tuple[str, Path]] = []
    for here, dirs, files in os.walk(root):
        rel = Path(here).relative_to(root)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and (rel / d).as_posix() not in skip)
        for f in sorted(files):
            p = Path(here) / f
            name = (rel / f).as_posix()
            if _skip_file(f) or name in skip or not p.is_file():
                continue
            out.append((name, p))
    return sorted(out)


def ignore_patterns(exclude: Iterable[str] = ()) -> list[str]:
    """What :func:`iter_source_files` skips, as ``.gitignore`` patterns, for a platform that packs the
    directory itself (Ray's ``runtime_env["excludes"]``, matched with gitwildmatch, relative to the
    directory; https://docs.ray.io/en/latest/ray-core/handling-dependencies.html, read 2026-11-30).

    Returns:
        :data:`SKIP_DIRS` names (any depth), ``*.pyc``, ``*.pyo``, then each ``exclude`` path anchored
        at the root (``/output``), its wildcard characters escaped; sorted, so plans are stable.
    """
    def anchored(rel: str) -> str:
        escaped = "".join("\\" + c if c in "\\*?[]" else c for c in rel)
        return "/" + escaped.rstrip(" ") + ("\\ " * (len(escaped) - len(escaped.rstrip(" "))))

    return sorted(SKIP_DIRS) + ["*.pyc", "*.pyo"] + sorted(anchored(r) for r in exclude)


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


def source_size(source_dir: Union[str, Path], exclude: Iterable[str] = ()) -> SizeReport:
    """Measure what a bundle of ``source_dir`` carries (see :func:`iter_source_files`)."""
    sizes = [(rel, p.stat().st_size) for rel, p in iter_source_files(source_dir, exclude)]
    largest = tuple(sorted(sizes, key=lambda s: (-s[1], s[0]))[:5])
    return SizeReport(sum(s for _, s in sizes), len(sizes), largest)


def check_source_size(source_dir: Union[str, Path], *, limit: int = SOURCE_DIR_LIMIT,
                      why: str = "source bundles are uploaded on every changed submit and unpacked on "
                                 "every node; put data in inputs (channels) and checkpoint.uri",
                      exclude: Iterable[str] = ()) -> SizeReport:
    """Refuse a source directory larger than ``limit`` bytes (what :func:`iter_source_files` with
    ``exclude`` carries).

    Returns:
        the :class:`SizeReport` when within the limit.

    Raises:
        SpecError: at ``source_dir`` with the size, the largest files, the limit and ``why``.
    """
    report = source_size(source_dir, exclude)
    if report.total_bytes > limit:
        from unijob.errors import SpecError

        raise SpecError.at(("source_dir",), f"the source directory {source_dir} is {report.describe()}; "
                                            f"the limit is {_mib(limit)} ({why})")
    return report


def pack_dir(source_dir: Union[str, Path], extra: Optional[Mapping[str, Union[bytes, Path]]] = None, *,
             exclude: Iterable[str] = ()) -> bytes:
    """A deterministic gzip tarball of ``source_dir`` (entries relative to it), plus ``extra`` files.

    Args:
        source_dir: the directory to pack (see :func:`iter_source_files` for what is skipped).
        extra: archive name -> bytes or a file to read; replaces a packed file of the same name
            (e.g. ``requirements.txt`` from outside the directory, or the runtime wheel).
        exclude: relative paths left out (:func:`local_outputs` of the spec).

    Returns:
        the ``.tar.gz`` bytes: PAX format, entries sorted, mtimes 0, owner 0/0, modes 0o755 for
        directories and executables else 0o644, gzip header without name or mtime.

    Raises:
        FileNotFoundError: ``source_dir`` does not exist.
    """
    files: dict[str, Union[bytes, Path]] = dict(iter_source_files(source_dir, exclude))
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
