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
