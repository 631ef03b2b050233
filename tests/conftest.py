"""Fixtures for local endpoint tests and the MLflow server (the isolated UNIJOB_HOME of every test,
here and under adapters/, is the repository's root conftest.py)."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unijob.testing.jobs import processes_under


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
    return processes_under


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


