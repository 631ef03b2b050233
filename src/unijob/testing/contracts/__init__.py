"""Each platform's start contract, run on this machine: a plan's job started the way its platform
starts it (its container contract, its in-container code where that is published), with no Docker
and no network, so a test proves the job *runs*, not only that its request validates.

One module per platform; the pieces they share are here: :func:`job_python`, a Python of a stock job
image (no unijob in it), and :func:`clean_env`, the environment a container starts with.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import venv
from pathlib import Path
from typing import Mapping, Optional, Sequence


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
