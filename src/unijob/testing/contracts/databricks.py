"""Databricks' start contract, run here: the task of a ``runs/submit`` body started the way a
Databricks cluster starts a ``spark_python_task``, with no workspace, no Docker and no network.

Derived from the request and Databricks' documentation, never from the adapter's own code:

- **Files**: workspace files and volume files (``/Workspace/...``, ``/Volumes/...``) are what the
  workspace holds (a test passes the fake workspace's files), laid out under a local folder that
  stands for the cluster's FUSE mounts of the same paths ("What are workspace files?",
  https://docs.databricks.com/aws/en/files/workspace).
- **Libraries**: each task library is installed before the task starts, the way Databricks does
  for a cluster's Python: ``whl`` is ``pip install <file>`` ("installing a wheel library on a
  cluster is like running the pip command against the wheel file directly on driver and
  executors", Libraries API), ``pypi`` is ``pip install <package>`` (here with no index: there is
  no network, so only what the image has satisfies it). A failed install fails the run with
  pip's own error in ``state_message``, as "Library installation failed ... Error messages: ...".
- **Cluster**: ``new_cluster.spark_env_vars`` are the process environment (``{{secrets/scope/key}}``
  references resolved from the secrets a test passes, as Databricks resolves them at cluster
  start), ``spark_conf`` goes to ``spark-defaults.conf`` (``SPARK_CONF_DIR``), and the runtime's own
  variables are set: ``DATABRICKS_RUNTIME_VERSION`` (from ``spark_version``), ``DB_IS_DRIVER``,
  ``PYSPARK_PYTHON`` (the cluster's Python, which Spark's Python workers run).
- **The task**: ``python <python_file> <parameters...>`` on the driver, the working directory the
  file's folder (Databricks Runtime 14.0 and above: "the CWD is the directory containing the
  notebook or script being run", https://docs.databricks.com/aws/en/files/cwd-dbr-14), ending
  ``TERMINATED/SUCCESS`` on exit 0 and ``TERMINATED/FAILED`` otherwise, with the output in
  ``runs/get-output`` (``logs``; ``error`` the exception's last line, ``error_trace`` its traceback).
  The launcher's TorchDistributor path (``pyspark.ml.torch.distributor``) runs for real where the
  image's Python has pyspark and torch, in Spark local mode.

A ``sink`` (the test suite's fake workspace) receives the run's states and output, so
``unijob status`` and ``unijob logs`` show what really ran.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol

from . import clean_env, python_layer

_FUSE = re.compile(r"(?<![\w./:-])/(Workspace|Volumes|dbfs)(?=/)")

#: Databricks keeps the last 5 MB of a task's output for ``runs/get-output`` (Jobs API docs).
OUTPUT_LIMIT = 5 * 1024 * 1024


class Sink(Protocol):
    """Where the runner reports, as the cluster reports to the Jobs service."""

    def put_run_state(self, task_run_id: int, life_cycle_state: str, result_state: Optional[str] = None,
                      state_message: str = "", logs: Optional[str] = None, error: Optional[str] = None,
                      error_trace: Optional[str] = None) -> None: ...


@dataclass
class RunResult:
    """How the task ended: ``result_state`` (SUCCESS, FAILED), the message, the output."""

    result_state: str
    state_message: str
    logs: str
    exit_code: Optional[int] = None
    error: Optional[str] = None
    error_trace: Optional[str] = None


def _spark_version_number(spark_version: str) -> str:
    m = re.match(r"^(\d+\.\d+)", spark_version)
    return m.group(1) if m else spark_version


def error_of(output: str) -> tuple[Optional[str], Optional[str]]:
    """(``error``, ``error_trace``) from a Python process's output: the last traceback and its last line."""
    i = output.rfind("Traceback (most recent call last):")
    if i == -1:
        return None, None
    trace = output[i:].rstrip()
    return trace.splitlines()[-1], trace


class DatabricksContract:
    """Run the first task of a ``runs/submit`` body here, as its cluster would.

    Args:
        body: the ``runs/submit`` request body (as the plan holds it, or as the fake received it).
        python: the Python standing for the runtime's (``/databricks/python3``).
        root: a folder for the workspace files, the cluster's Python layer and the output.
        files: workspace/volume path -> bytes (what the uploads put in the workspace).
        secrets: ``{"scope/key": value}`` for ``{{secrets/scope/key}}`` references.
        sink: receives the run's states and output (see :class:`Sink`), for ``task_run_id``.
    """

    def __init__(self, body: Mapping[str, Any], python: os.PathLike, root: os.PathLike, *,
                 files: Mapping[str, bytes], secrets: Optional[Mapping[str, str]] = None,
                 sink: Optional[Sink] = None, task_run_id: int = 0) -> None:
        self.task = body["tasks"][0]
        self.python = Path(python)
        self.root = Path(root)
        self.files = dict(files)
        self.secrets = dict(secrets or {})
        self.sink = sink
        self.task_run_id = task_run_id
        self.proc: Optional[subprocess.Popen] = None
        #: time.time() when the cluster was ready (libraries about to be installed, then the task)
        self.started: Optional[float] = None

    def local(self, path: str) -> Path:
        """The local folder standing for a workspace, volume or DBFS path (a bare ``/Users/...``
        or ``/Shared/...`` is a workspace path)."""
        p = path if path.startswith(("/Workspace/", "/Volumes/", "/dbfs/")) else "/Workspace" + path
        return self.root / "fs" / p.lstrip("/")

    def rewrite(self, text: str) -> str:
        """``text`` with every ``/Workspace/``, ``/Volumes/`` and ``/dbfs/`` path (where it stands
        as a path) moved under the local folder: the one liberty this runner takes, since without a
        mount namespace the cluster's FUSE paths cannot exist here. Applied to the task's
        parameters and ``spark_env_vars`` values."""
        return _FUSE.sub(lambda m: str(self.root / "fs" / m.group(1)), text)

    def _report(self, life: str, result: Optional[str] = None, message: str = "", **out: Any) -> None:
        if self.sink is not None:
            self.sink.put_run_state(self.task_run_id, life, result, message, **out)

    def run(self, timeout: float = 600) -> RunResult:
        """Lay out the files, install the libraries, run the task; report every state to the sink.

        Raises:
            ValueError: the task is not a ``spark_python_task``, or a secret reference is unknown.
        """
        spt = self.task.get("spark_python_task")
        if not spt:
            raise ValueError("only spark_python_task tasks are run here")
        for path, data in self.files.items():
            p = self.local(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        self._report("PENDING", message="Waiting for cluster")
        layer = python_layer(self.python, self.root / "cluster-python")
        env = self._env(layer)
        self._report("RUNNING", message="Installing libraries")
        self.started = time.time()
        failed = self._install(layer, env)
        if failed:
            self._report("INTERNAL_ERROR", "FAILED", failed)
            return RunResult("FAILED", failed, "")
        script = self.local(spt["python_file"])
        argv = [str(layer / "python"), str(script), *(self.rewrite(a) for a in spt.get("parameters", []))]
        log = self.root / "driver.log"
        self._report("RUNNING", message="In run")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=script.parent, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + min(timeout, float(self.task.get("timeout_seconds") or timeout))
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.stop()
                text = log.read_text(errors="replace")
                self._report("TERMINATED", "TIMEDOUT", "Run timed out", logs=text[-OUTPUT_LIMIT:])
                return RunResult("TIMEDOUT", "Run timed out", text, None)
            self._report("RUNNING", message="In run", logs=log.read_text(errors="replace")[-OUTPUT_LIMIT:])
            time.sleep(0.1)
        self.stop()  # the cluster goes with the run: nothing the task left behind survives it
        text = log.read_text(errors="replace")
        code = self.proc.returncode
        if code == 0:
            self._report("TERMINATED", "SUCCESS", "", logs=text[-OUTPUT_LIMIT:])
            return RunResult("SUCCESS", "", text, 0)
        error, trace = error_of(text)
        message = "Workload failed, see run output for details"
        self._report("TERMINATED", "FAILED", message, logs=text[-OUTPUT_LIMIT:],
                     error=error or f"the task exited with code {code}", error_trace=trace)
        return RunResult("FAILED", message, text, code, error, trace)

    def stop(self) -> None:
        """Kill the task's process group (a terminated cluster takes every process with it)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.returncode is None:
            self.proc.wait(10)

    def _env(self, layer: Path) -> dict[str, str]:
        cluster = self.task.get("new_cluster") or {}
        env: dict[str, str] = {}
        for k, v in (cluster.get("spark_env_vars") or {}).items():
            def secret(m: re.Match) -> str:
                key = f"{m[1]}/{m[2]}"
                if key not in self.secrets:
                    raise ValueError(f"spark_env_vars.{k}: secret {key} is not in the secrets passed")
                return self.secrets[key]

            env[k] = self.rewrite(re.sub(r"\{\{secrets/([^/}]+)/([^}]+)\}\}", secret, v))
        conf_dir = self.root / "spark-conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "spark-defaults.conf").write_text(
            "".join(f"{k} {v}\n" for k, v in sorted((cluster.get("spark_conf") or {}).items())))
        base = clean_env({"PATH": os.pathsep.join([str(layer), str(self.python.parent), os.environ.get("PATH", "")]),
                          "DATABRICKS_RUNTIME_VERSION": _spark_version_number(cluster.get("spark_version", "")),
                          "DB_IS_DRIVER": "TRUE", "PYSPARK_PYTHON": str(layer / "python"),
                          "PYSPARK_DRIVER_PYTHON": str(layer / "python"), "SPARK_CONF_DIR": str(conf_dir)})
        return {**base, **env}

    def _install(self, layer: Path, env: Mapping[str, str]) -> str:
        """Install the task's libraries; returns the failure message ("" when all installed)."""
        for lib in self.task.get("libraries") or []:
            if "whl" in lib:
                what, target = f"whl: \"{lib['whl']}\"", str(self.local(lib["whl"]))
            elif "pypi" in lib:
                what, target = f"pypi {{ package: \"{lib['pypi']['package']}\" }}", lib["pypi"]["package"]
            else:
                return f"Library installation failed: {sorted(lib)} libraries are not installed here"
            out = subprocess.run([str(layer / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                                  "--no-input", target], env={**env, "PIP_NO_INDEX": "1"}, capture_output=True,
                                 text=True, timeout=600)
            if out.returncode != 0:
                errors = "\n".join(out.stderr.strip().splitlines()[-10:])
                return (f"Library installation failed for library due to user error for {what}. "
                        f"Error messages:\n{errors}")
        return ""
