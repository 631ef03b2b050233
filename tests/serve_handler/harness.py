"""Start and stop real ``python -m unijob.serve`` processes for the serving tests.

Loaded by path from tests/test_serve.py and tests/test_serve_contract.py (pytest runs with
``--import-mode=importlib``, so test modules cannot import each other).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx

from unijob.testing.jobs import stop_process

HERE = Path(__file__).parent
#: the one handler file behind every serving test
PREDICTOR = HERE / "predictor.py"
#: the linear model the tests serve: prediction = instance . weights + bias
MODEL = {"weights": [1.0, 2.0], "bias": 0.5}
#: variables that would redirect the server's port, model or routes: never inherited from the
#: environment the tests run in; each test sets the ones its platform sets
PLATFORM_VARS = ("AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE", "AIP_STORAGE_URI", "SAGEMAKER_BIND_TO_PORT",
                 "PORT", "UNIJOB_HANDLER", "UNIJOB_MODEL_DIR", "UNIJOB_MODEL_URI", "UNIJOB_MAX_PAYLOAD_BYTES",
                 "UNIJOB_SERVE_HOST", "UNIJOB_SERVE_WORKERS", "UNIJOB_ACCESS_LOG", "UNIJOB_TEST_LOAD_GATE")
#: how long a server may take to start (import starlette, uvicorn and numpy) on a slow machine
START_TIMEOUT = 60.0


def expected(instances, scale: float = 1.0) -> list[float]:
    """The predictions :data:`MODEL` gives, computed here in plain Python (not by the handler)."""
    return [(sum(w * x for w, x in zip(MODEL["weights"], inst)) + MODEL["bias"]) * scale for inst in instances]


def write_model(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").write_text(json.dumps(MODEL))
    return directory


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment minus the platform variables, plus ``extra``; models extract under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_VARS and not k.startswith("AIP_")}
    env.update(PYTHONUNBUFFERED="1", UNIJOB_MODEL_CACHE=str(tmp / "model-cache"))
    env.update(extra)
    return env


def invoke_endpoint_request(body: bytes, *, content_type: str = "application/json", accept: str = "application/json",
                            variant: str = "primary") -> dict:
    """The HTTP request of sagemaker-runtime InvokeEndpoint, built by botocore from its own service
    model: the parameters are validated against the InvokeEndpoint input shape (ParamValidator), then
    serialized by the service's protocol serializer. SageMaker's front end forwards the body and
    the Content-Type and Accept headers to the container's POST /invocations."""
    import pytest

    botocore_session = pytest.importorskip("botocore.session")
    from botocore.serialize import create_serializer
    from botocore.validate import ParamValidator

    model = botocore_session.get_session().get_service_model("sagemaker-runtime")
    op = model.operation_model("InvokeEndpoint")
    params = {"EndpointName": "unijob-contract", "Body": body, "ContentType": content_type, "Accept": accept,
              "TargetVariant": variant}
    report = ParamValidator().validate(params, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    request = create_serializer(model.metadata["protocol"]).serialize_to_request(params, op)
    assert request["method"] == "POST" and request["url_path"] == "/endpoints/unijob-contract/invocations"
    return request


class Server:
    """One server process: its port, its log (stdout and stderr) and HTTP helpers."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kw) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.client.post(path, **kw)

    def wait_for(self, path: str = "/ping", status: int = 200, timeout: float = START_TIMEOUT) -> httpx.Response:
        """Poll GET ``path`` until it answers ``status``; fails with the log if the process exits."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode} before {path} answered {status}:\n{self.log()}")
            try:
                r = self.get(path, timeout=5.0)
                if r.status_code == status:
                    return r
                last = f"{r.status_code} {r.text}"
            except httpx.TransportError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"{path} did not answer {status} within {timeout} s (last: {last}):\n{self.log()}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 10 s."""
        self.client.close()
        stop_process(self.proc, 10)


class Servers:
    """Starts server processes and stops every one of them in :meth:`close` (a fixture finalizer)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Server] = []

    def start(self, argv: list[str], *, env: dict[str, str], port: int, cwd: Optional[Path] = None,
              name: str = "server") -> Server:
        log_path = self.tmp / f"{name}-{len(self.started)}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd or self.tmp, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        server = Server(proc, port, log_path)
        self.started.append(server)
        return server

    def serve(self, *args: str, env: dict[str, str], port: int, cwd: Optional[Path] = None, name: str = "server") -> Server:
        """``python -m unijob.serve *args`` with this interpreter (the one unijob is installed in)."""
        return self.start([sys.executable, "-m", "unijob.serve", *args], env=env, port=port, cwd=cwd, name=name)

    def close(self) -> None:
        for s in self.started:
            s.stop()
