"""Small helpers for tests that run real jobs: specs for the test clusters, waiting, a trained quickstart
model, and the processes a test started under its UNIJOB_HOME."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def spec_with(path: os.PathLike, target: str, options: dict, **updates: Any) -> Any:
    """Load the spec file at ``path`` and give it ``targets.<target>`` = ``options`` (plus field ``updates``)."""
    from unijob.loading import load_spec

    spec = load_spec(path).spec
    return spec.model_copy(update={"targets": {**spec.targets, target: options}, **updates})


def wait_final(adapter: Any, handle: Any, timeout: float = 120.0) -> Any:
    """Poll ``adapter.status(handle)`` every 0.5 s until final; returns the final status.

    Raises:
        AssertionError: not final within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = adapter.status(handle)
        if st.state.is_final:
            return st
        time.sleep(0.5)
    raise AssertionError(f"job {handle.native_id} not final after {timeout} s: {adapter.status(handle)}")


def stop_process(proc: Any, grace: float = 10.0) -> None:
    """Stop the :class:`subprocess.Popen` ``proc`` by its PID: SIGTERM, then SIGKILL after
    ``grace`` seconds; reaped either way (nothing if it has already exited)."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        proc.wait()
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def cmdline(pid: int) -> bytes:
    """``/proc/PID/cmdline`` (NUL-separated argv), or ``b""`` for a process that is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_under(home: os.PathLike) -> list[int]:
    """Pids of live processes whose environment holds ``UNIJOB_HOME=home`` (job supervisors, routers,
    and the replicas they start inherit it); the calling process and multiprocessing's resource
    tracker excluded. Linux only (reads ``/proc``)."""
    from unijob.local import jobdir as jd

    needle = f"UNIJOB_HOME={home}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env and jd.alive(int(entry)) and b"resource_tracker" not in cmdline(int(entry)):
            pids.append(int(entry))
    return pids


def trained_quickstart(example: os.PathLike, dest: os.PathLike, *, epochs: int = 3) -> Path:
    """``dest`` holding examples/quickstart's ``train.py`` and ``serve.py`` (from ``example``) and
    the model ``train.py`` wrote into ``dest/output`` after ``epochs`` epochs, trained by this
    Python outside any unijob job (no ``UNIJOB_*`` variables but the hyperparameters and output).

    Raises:
        AssertionError: training failed (its output is the message).
    """
    import json
    import shutil
    import subprocess
    import sys

    base = Path(dest)
    base.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "serve.py"):
        shutil.copy(Path(example) / name, base / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIJOB_")}
    env.update(UNIJOB_HYPERPARAMETERS=json.dumps({"epochs": epochs}), UNIJOB_OUTPUT_DIR=str(base / "output"))
    out = subprocess.run([sys.executable, "train.py"], cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return base


def local_run_leftovers(example: os.PathLike, *, mib: int = 2) -> list[Path]:
    """Write into ``example`` (a copy of examples/quickstart) what a local run leaves there: ``output/``
    (``model.pkl`` of ``mib`` MiB, ``metrics.json``), ``checkpoints/<job id>/`` (two checkpoints of
    ``mib`` MiB each) and the ``__pycache__`` a local endpoint's import of ``serve.py`` writes.
    Contents are seeded pseudo-random bytes (incompressible, as a pickled model is), so a bundle that
    carries them is visibly larger. Returns the paths written."""
    import random

    base = Path(example)
    rng = random.Random(7)
    files = {
        "output/model.pkl": rng.randbytes(mib << 20),
        "output/metrics.json": b'{"accuracy": 0.97}\n',
        "checkpoints/quickstart-1a2b3c4d/ckpt-000019/state.pkl": rng.randbytes(mib << 20),
        "checkpoints/quickstart-1a2b3c4d/ckpt-000020/state.pkl": rng.randbytes(mib << 20),
        "__pycache__/serve.cpython-311.pyc": rng.randbytes(4096),
    }
    written = []
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        written.append(p)
    return written
