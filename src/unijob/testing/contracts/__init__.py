"""Each platform's start contract, run on this machine: a plan's job started the way its platform
starts it (its container contract, its in-container code where that is published), with no Docker
and no network, so a test proves the job *runs*, not only that its request validates.

One module per platform; the pieces they share are here: :func:`job_python`, a Python of a stock job
image (no unijob in it), and :func:`clean_env`, the environment a container starts with.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import uuid
import venv
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence


def clean_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment a job container starts with: this machine's ``PATH`` and locale, and nothing
    that would leak this checkout or its virtualenv into the job (``PYTHON*``, ``VIRTUAL_ENV``,
    ``UNIJOB_*``, ``PIP_*`` except the no-index guard), plus ``extra``."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["HOME"] = os.environ.get("HOME", "/root")
    env.update(extra or {})
    return env


def job_python(root: os.PathLike, packages: Sequence[str] = ()) -> Path:
    """A Python interpreter like a stock job image's: a fresh venv with pip and ``packages`` (for
    example ``["sagemaker-training==5.1.4", "scikit-learn"]``), and **no unijob**: the runtime must
    reach the job through the runtime wheel, as on the platform.

    Venvs are cached under ``root`` by the hash of ``packages`` (a session-scoped test fixture
    passes one directory for the whole run).

    Returns:
        the venv's ``python``.

    Raises:
        RuntimeError: pip could not install ``packages`` (its output included), or unijob is
            importable in the new venv.
    """
    key = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:12]
    d = Path(root) / f"py-{key}"
    py = d / "bin" / "python"
    done = d / ".ready"
    if not done.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(d)
        if packages:
            out = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                  *packages], env=clean_env(), capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(packages)} failed:\n{out.stdout}\n{out.stderr}")
        probe = subprocess.run([str(py), "-c", "import unijob"], env=clean_env(), capture_output=True)
        if probe.returncode == 0:
            raise RuntimeError(f"unijob is importable in the job Python {py}; it must come from the runtime wheel")
        done.touch()
    return py


#: ``/etc/hosts``, the file the system resolver (glibc's ``files`` source, first in ``nsswitch.conf``)
#: reads on every lookup; :func:`hosts_entries` adds lines to it.
HOSTS_FILE = Path("/etc/hosts")


@contextlib.contextmanager
def hosts_entries(names: Sequence[str], address: str = "127.0.0.1",
                  hosts_file: Optional[os.PathLike] = None) -> Iterator[bool]:
    """Make ``names`` resolve to ``address`` for every process on this machine while the block runs,
    as a cluster's DNS resolves a platform's host names (a headless Service's pod names, SageMaker's
    ``algo-N``) to the nodes of the job; here every node is this machine.

    The names are added as one line tagged with a marker unique to this call, and at exit exactly
    that line is removed again (other lines, including ones other runners added meanwhile, are kept),
    writing the file in place (``/etc/hosts`` is often a bind mount that cannot be replaced).

    Yields:
        True when the names were added; False when the file is not writable (not root), in which
        case nothing is changed and callers needing the names skip with that reason.
    """
    path = Path(hosts_file or HOSTS_FILE)
    marker = f"# unijob.testing {os.getpid()}-{uuid.uuid4().hex[:8]}"
    if not names or not os.access(path, os.W_OK):
        yield False
        return
    line = f"{address} {' '.join(dict.fromkeys(names))} {marker}\n"
    raw = path.read_bytes()
    glue = "\n" if raw and not raw.endswith(b"\n") else ""  # never join the last line
    with open(path, "a", encoding="utf-8") as f:
        f.write(glue + line)
    try:
        yield True
    finally:
        with open(path, "r+", encoding="utf-8") as f:
            kept = "".join(ln for ln in f.readlines() if not ln.rstrip("\n").endswith(marker))
            if glue and kept == raw.decode("utf-8") + "\n":  # nothing else added: drop our newline too
                kept = kept[:-1]
            f.seek(0)
            f.write(kept)
            f.truncate()


def python_layer(image_python: os.PathLike, directory: os.PathLike) -> Path:
    """A writable layer over an image's Python, as a container's copy-on-write layer over its image:
    a venv at ``directory`` whose interpreter also sees ``image_python``'s site-packages (a ``.pth``
    file) and installs into its own, so what a job installs never changes the (shared, cached) image.

    Returns:
        the layer's ``bin`` folder (its ``python``; put it first on the job's ``PATH``).
    """
    d = Path(directory)
    code = ("import sys, sysconfig, venv; venv.EnvBuilder(with_pip=False, symlinks=True).create(sys.argv[1]); "
            "print(sysconfig.get_path('purelib')); print(sysconfig.get_path('platlib'))")
    image = subprocess.run([str(image_python), "-c", code, str(d)], capture_output=True, text=True, check=True,
                           env=clean_env())
    mine = subprocess.run([str(d / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, env=clean_env()).stdout.strip()
    Path(mine, "_image_site_packages.pth").write_text("\n".join(dict.fromkeys(image.stdout.split())) + "\n")
    # The image's console scripts (torchrun, ...) run with the layer's Python, as an image's scripts
    # run with the image's Python and see what the job installed (its user site).
    image_bin = Path(image_python).parent
    for script in sorted(image_bin.iterdir()):
        target = d / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        with open(script, "rb") as f:
            first = f.readline()
        if first.startswith(b"#!") and b"python" in first:
            target.write_bytes(f"#!{d / 'bin' / 'python'}\n".encode() + script.read_bytes()[len(first):])
            target.chmod(0o755)
    return d / "bin"


def torch_requirement() -> Optional[str]:
    """A pip requirement of a CPU-only PyTorch for contract tests, or None when there is none to be
    had cheaply: ``UNIJOB_TEST_TORCH_REQUIREMENT``, else a ``torch-*+cpu-<this Python>-*.whl`` in a
    ``find-links`` folder of pip's (``PIP_FIND_LINKS``, or pip's configuration files). (PyPI's
    default Linux torch wheel pulls about 2.4 GB of CUDA libraries, too much for CI's time; tests
    needing torch skip without one of these.)"""
    import glob
    import re
    import sys
    import sysconfig

    if os.environ.get("UNIJOB_TEST_TORCH_REQUIREMENT"):
        return os.environ["UNIJOB_TEST_TORCH_REQUIREMENT"]
    tag = "cp" + sysconfig.get_python_version().replace(".", "")
    folders = (os.environ.get("PIP_FIND_LINKS") or "").split()
    try:  # pip's own view: its config files and PIP_* (lines like  global.find-links='/opt/wheels')
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60).stdout
        for value in re.findall(r"(?m)^\S*find-links='([^']*)'", listed):
            folders += value.split()
    except (OSError, subprocess.SubprocessError):
        pass
    for folder in dict.fromkeys(folders):
        for whl in sorted(glob.glob(os.path.join(folder, f"torch-*+cpu-{tag}-{tag}-*linux*_x86_64.whl"))):
            return f"torch @ file://{whl}"
    return None
