#!/usr/bin/env python3
"""Set up and run unijob from a fresh clone with nothing but Python >= 3.10.

    python3 dev.py quickstart   # install unijob into .venv and run the quickstart training job
    python3 dev.py test [ARGS]  # install unijob, every adapter and the test tools; run the whole suite

Each command creates ``.venv`` beside this file on first use and reinstalls only when a
``pyproject.toml`` changed. Extra ARGS go to pytest (e.g. ``python3 dev.py test -k sagemaker``).

``test`` installs each adapter with its ``test`` extra (the vendor SDKs its tests run, such as the
SageMaker Python SDK 2.x). Under CI (``CI`` set) or with ``UNIJOB_SAGEMAKER3=1`` it also builds
``.venv-sagemaker3`` (the SageMaker Python SDK 3.x, which cannot share a venv with 2.x: ~1.1 GB,
about 6 minutes on a busy 2-core machine with a warm pip cache) for the ModelTrainer tests, which
skip with the reason where it is missing.

``test`` also installs the CPU build of PyTorch (``torch==2.13.0``) for the tests marked ``torch``,
but only from a file pip finds with no index (``--no-index``: pip's configured ``find-links``,
e.g. ``PIP_FIND_LINKS``), never from an index: PyPI's Linux ``torch`` is a CUDA build of several
GB. Where no such file is found, or with ``UNIJOB_TEST_TORCH=0``, nothing is installed and those
tests skip with the reason. Here it adds ~20 s to the first setup and ~750 MB to ``.venv``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_SM3 = ROOT / ".venv-sagemaker3"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def run(*cmd: object, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def adapters() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "adapters").glob("*/pyproject.toml"))


def adapter_req(adapter: Path) -> str:
    """``path[test]`` when the adapter's pyproject declares a ``test`` extra, else ``path``."""
    import re

    text = (adapter / "pyproject.toml").read_text()
    return f"{adapter}[test]" if re.search(r"(?m)^test\s*=", text) else str(adapter)


def _digest() -> str:
    files = [ROOT / "pyproject.toml", *(a / "pyproject.toml" for a in adapters())]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def ensure_sagemaker3() -> None:
    """Build ``.venv-sagemaker3``: unijob, unijob-sagemaker and the SageMaker Python SDK 3.x, once."""
    py = VENV_SM3 / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")
    stamp = VENV_SM3 / f".unijob-installed-{_digest()}"
    if stamp.exists():
        return
    if not py.exists():
        print(f"creating {VENV_SM3}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV_SM3)
    run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "sagemaker>=3,<4",
        "-e", str(ROOT), "-e", str(ROOT / "adapters" / "sagemaker"))
    stamp.touch()


#: The PyTorch the torch-marked tests run with: a CPU build, taken only from a local file (see above).
TORCH = "torch==2.13.0"


def ensure_torch() -> None:
    """Install :data:`TORCH` into ``.venv`` from a file pip finds without an index, once; say why not.

    Step 1 is ``pip install --no-index --no-deps torch==2.13.0``: it can only take a wheel from the
    ``find-links`` folders pip is configured with, so it never downloads (a CUDA build from PyPI is
    several GB). Step 2 installs torch's own small dependencies (sympy, networkx, ...) from the index;
    torch itself is then already satisfied, so pip fetches no torch."""
    stamp = VENV / f".unijob-{TORCH.replace('==', '-')}"
    if stamp.exists():
        return
    if os.environ.get("UNIJOB_TEST_TORCH") == "0":
        print("UNIJOB_TEST_TORCH=0: torch not installed; the tests marked torch skip", flush=True)
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    local = subprocess.run([*pip, "--no-index", "--no-deps", TORCH], cwd=ROOT, capture_output=True, text=True)
    if local.returncode != 0:
        errors = [ln for ln in local.stderr.splitlines() if ln.startswith("ERROR")] or ["pip found no file"]
        why = errors[0]
        print(f"{TORCH} (CPU) not installed: no local wheel found without an index ({why}); the tests "
              "marked torch skip. Put a CPU torch wheel in a folder on PIP_FIND_LINKS to run them.", flush=True)
        return
    run(*pip, TORCH)  # its dependencies; torch itself is installed already
    stamp.touch()


def ensure(kind: str) -> None:
    """Create the venv and install what ``kind`` ('quickstart' or 'test') needs, once."""
    if sys.version_info < (3, 10):
        sys.exit(f"unijob needs Python >= 3.10; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".unijob-installed-{kind}-{_digest()}"
    if stamp.exists():
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if kind == "quickstart":
        run(*pip, "-e", f"{ROOT}[quickstart]")
    else:
        editable = [x for a in adapters() for x in ("-e", adapter_req(a))]
        run(*pip, "-e", f"{ROOT}[test]", *editable)
    stamp.touch()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("quickstart", "test"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure(cmd)
    if cmd == "test":
        ensure_torch()
    if cmd == "test" and (os.environ.get("CI") or os.environ.get("UNIJOB_SAGEMAKER3") == "1"):
        ensure_sagemaker3()
    env = dict(os.environ)
    if cmd == "quickstart":
        spec = ROOT / "examples" / "quickstart" / "job.yaml"
        return subprocess.run([str(BIN / "unijob"), "submit", str(spec), "--follow", *rest], cwd=ROOT, env=env).returncode
    code = subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
