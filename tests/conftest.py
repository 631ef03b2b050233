"""Shared fixtures: an isolated UNIJOB_HOME per test, and helpers for local endpoint tests."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unijob.local import jobdir as jd


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own UNIJOB_HOME: records and local jobs never touch the user's."""
    home = tmp_path / "unijob-home"
    monkeypatch.setenv("UNIJOB_HOME", str(home))
    yield home
    # Safety net: nothing a test started under its home outlives it. Job supervisors of tests that
    # do not wait for their job are killed quietly; a router or replica left running is reported
    # (tests that deploy endpoints also assert it themselves).
    served = []
    for pid in _processes_of(home):
        cmdline = _cmdline(str(pid))
        try:
            os.killpg(pid, 9) if os.getpgid(pid) == pid else os.kill(pid, 9)
        except (OSError, ProcessLookupError):
            continue
        if b"unijob.local.router" in cmdline or b"unijob.serve" in cmdline:
            served.append(pid)
    if served:
        import warnings

        warnings.warn(f"killed {len(served)} endpoint process(es) left running under {home}: {served}")


HANDLER = """\
import os, time

class Predictor:
    def load(self, model_dir):
        if os.environ.get("FAIL_LOAD"):
            raise RuntimeError("cannot load the model: " + os.environ["FAIL_LOAD"])
        self.tag = (model_dir / "tag.txt").read_text().strip() if model_dir else "none"

    def predict(self, instances, parameters):
        time.sleep(float(parameters.get("sleep", 0)))
        return [{"x": x, "model": self.tag, "pid": os.getpid()} for x in instances]
"""


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _processes_of(home: Path) -> list[int]:
    """Pids of live processes started under this test's UNIJOB_HOME (routers inherit it, and
    replicas inherit it from their router); the test process itself excluded."""
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
        if needle in env and jd.alive(int(entry)) and b"resource_tracker" not in _cmdline(entry):
            pids.append(int(entry))
    return pids


def _write_project(base: Path, extra: str = "", *, variants: str | None = None) -> Path:
    (base / "handler.py").write_text(HANDLER)
    for name in ("blue", "green"):
        (base / "models" / name).mkdir(parents=True, exist_ok=True)
        (base / "models" / name / "tag.txt").write_text(f"{name}-model\n")
    variants = variants or """\
          variants:
            - {name: blue, weight: 90, model: ./models/blue}
            - {name: green, weight: 10, model: ./models/green}
    """
    (base / "endpoint.yaml").write_text(textwrap.dedent("""\
        name: digits
        endpoint:
          handler: handler.py:Predictor
    """) + textwrap.indent(textwrap.dedent(variants), "  ") + extra)
    return base / "endpoint.yaml"




@pytest.fixture
def endpoint_project():
    """``make(base, extra="", *, variants=None) -> Path``: a handler (handler.py:Predictor, whose
    answers name the model it loaded), models ``models/blue`` and ``models/green``, and
    ``endpoint.yaml`` (endpoint ``digits``, blue 90 / green 10 unless ``variants`` is given)."""
    return _write_project


@pytest.fixture
def live_processes():
    """``pids(home) -> list[int]``: live processes started under that UNIJOB_HOME."""
    return _processes_of


#: the mlflow CLI of this environment (the test extra installs mlflow)
MLFLOW = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real `mlflow server` (SQLite backend) for the test run, stopped by its process group id at the end."""
    import httpx

    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen([str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{d / 'db.sqlite'}",
                             "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=d)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (d / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start:\n" + (d / "server.log").read_text()[-2000:])
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


