"""The local target's model registry: a real MLflow tracking server with a SQLite backend on
127.0.0.1, started on first use like the other local services and reused after.

Where the registry is, in order: ``targets.local.registry_uri``; ``$MLFLOW_TRACKING_URI`` when it
is an ``http(s)://`` URL (MLflow's own variable, so a team's existing server is used as is); else a
server unijob starts itself: ``mlflow server --backend-store-uri sqlite:///<home>/mlflow/mlflow.db``
on a free loopback port, detached, its pid and start time in ``<home>/mlflow/server.json``.
``unijob models server --stop`` (or :func:`stop_server`) stops it by that pid. The server needs the
``mlflow`` package (``pip install 'unijob[registry]'``); without it the registry is not ready
(exit 3) with that line.

Approval is a model-version tag and aliases are MLflow aliases (:mod:`unijob.models.mlflow_rest`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from unijob import paths
from unijob.errors import NotReady, TargetError
from unijob.local import jobdir as jd
from unijob.models.mlflow_rest import MlflowBackedRegistry
from unijob.models.types import ModelVersion

#: Seconds to wait for a started server's ``/health`` (MLflow 3 takes 10-30 s on 2 busy cores).
START_TIMEOUT = 180.0


def server_dir(*, create: bool = True) -> Path:
    d = paths.home(create=create) / "mlflow"
    if create:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _mlflow_executable() -> str:
    here = Path(sys.executable).with_name("mlflow")
    found = str(here) if here.exists() else shutil.which("mlflow")
    if not found:
        raise NotReady("the local model registry runs an MLflow server, and mlflow is not installed: "
                       "pip install 'unijob[registry]'")
    return found


def _healthy(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def server_state() -> Optional[dict[str, Any]]:
    """The running server's ``{"pid", "start_time", "url"}``, or None when none runs."""
    st = jd.read_json(server_dir(create=False) / "server.json")
    if st and jd.alive(st.get("pid"), st.get("start_time")):
        return st
    return None


def ensure_server() -> str:
    """The URL of the local MLflow server, starting it first when none runs.

    Raises:
        NotReady: mlflow is not installed.
        TargetError: the server did not answer ``/health`` within :data:`START_TIMEOUT` seconds
            (the end of its log is in the message); it is stopped then.
    """
    st = server_state()
    if st and _healthy(st["url"]):
        return st["url"]
    exe = _mlflow_executable()
    d = server_dir()
    if st:
        stop_server()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    (d / "artifacts").mkdir(exist_ok=True)
    argv = [exe, "server", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
            "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    with open(d / "server.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, cwd=str(d))
    jd.write_json_atomic(d / "server.json", {"pid": proc.pid, "start_time": jd.proc_start_time(proc.pid), "url": url})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _healthy(url):
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_server()
    tail = "\n".join(jd.tail(d / "server.log", 15))
    raise TargetError(f"the local MLflow server did not start (log {d / 'server.log'}):\n{tail}")


def stop_server() -> bool:
    """Stop the server unijob started (its process group, by the recorded pid and start time).

    Returns: whether one was running.
    """
    d = server_dir(create=False)
    st = jd.read_json(d / "server.json")
    if not st or not jd.alive(st.get("pid"), st.get("start_time")):
        return False
    pid = int(st["pid"])
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        end = time.monotonic() + wait
        while time.monotonic() < end and jd.alive(pid, st.get("start_time")):
            time.sleep(0.1)
        if not jd.alive(pid, st.get("start_time")):
            break
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    (d / "server.json").unlink(missing_ok=True)
    return True


def registry_url(options: Any = None) -> str:
    """Where the local target's registry is (see the module docstring for the order)."""
    uri = getattr(options, "registry_uri", None) if options is not None else None
    if uri:
        return str(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env.startswith(("http://", "https://")):
        return env
    return ensure_server()


class LocalRegistry(MlflowBackedRegistry):
    """The local target's registry: :class:`MlflowBackedRegistry` on :func:`registry_url`."""

    def mlflow_url(self, options: Any) -> str:
        return registry_url(options)

    def model_location(self, version: ModelVersion, *, options: Any = None) -> str:
        """A local directory holding the version's artifacts, downloaded once into
        ``<home>/models/<name>/<version>`` from the registry's artifact store."""
        if not version.source.startswith("mlflow-artifacts:/"):
            return version.source
        dest = paths.home() / "models" / version.name / version.version
        if not dest.is_dir():
            self._client(options).download(version.source, dest)
        return str(dest)
