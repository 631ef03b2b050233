"""Pipeline runs as a library: :func:`run`, :func:`run_of`, :func:`runs` and :class:`PipelineRun`
(``status``, ``wait``, ``cancel``, ``resume``).

A run lives in ``<unijob home>/pipelines/<run id>/``: ``pipeline.json`` (the checked spec, its
directory, the parameters and target), ``state.json`` (the run's and each step's state, job id,
outputs and metrics) and ``runner.log``. Its steps' jobs are ordinary job records, so
``unijob list`` shows them. The runner (:mod:`unijob.pipeline.runner`) is a detached process whose
pid and start time are recorded; cancel signals exactly that process.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from unijob.errors import NotFound, UsageError

RUN_FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def runs_dir(*, create: bool = True) -> Path:
    from unijob import paths

    d = paths.home(create=create) / "pipelines"
    if create:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


class PipelineRun:
    """One run of a pipeline. Attributes are those of the last :meth:`status`.

    Attributes:
        id: the run id. name: the pipeline's name. state: PENDING, RUNNING, SUCCEEDED, FAILED,
            CANCELLED. steps: step name -> {state, job_id, attempts, outputs, metrics, message}.
    """

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.id = run_dir.name
        self.status()

    def __repr__(self) -> str:
        return f"PipelineRun(id={self.id!r}, name={self.name!r}, state={self.state!r})"

    def status(self) -> "PipelineRun":
        """Re-read the run's state; a run whose runner died mid-way shows as ``STOPPED``
        (``resume()`` continues it)."""
        from unijob.local import jobdir as jd

        st = jd.read_json(self.dir / "state.json")
        if st is None:
            raise NotFound(f"no pipeline run {self.id}")
        self._state = st
        self.name, self.steps = st["name"], st["steps"]
        self.state = st["state"]
        if self.state not in RUN_FINAL and not self.runner_alive():
            self.state = "STOPPED"
        return self

    def runner_alive(self) -> bool:
        from unijob.local import jobdir as jd

        return jd.alive(self._state.get("runner_pid"), self._state.get("runner_start_time"))

    def wait(self, timeout: Optional[float] = None, interval: float = 0.5) -> str:
        """Block until the run ends (or its runner stops); returns the state.

        Raises:
            TimeoutError: after ``timeout`` seconds.
        """
        start = time.monotonic()
        while True:
            self.status()
            if self.state in RUN_FINAL or self.state == "STOPPED":
                return self.state
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"pipeline run {self.id} still {self.state} after {timeout} s")
            time.sleep(interval)

    def cancel(self) -> None:
        """Stop the runner (SIGTERM: it cancels its running step jobs) and wait for it to end."""
        self.status()
        if not self.runner_alive():
            return
        os.kill(int(self._state["runner_pid"]), signal.SIGTERM)
        end = time.monotonic() + 60
        while time.monotonic() < end and self.runner_alive():
            time.sleep(0.2)
        self.status()

    def resume(self) -> "PipelineRun":
        """Start a runner again on this run: finished steps are kept, step jobs still running are
        re-attached, failed, cancelled and unstarted steps run.

        Raises:
            UsageError: the run's runner is still running, or the run SUCCEEDED.
        """
        self.status()
        if self.runner_alive():
            raise UsageError(f"pipeline run {self.id} is still running")
        if self.state == "SUCCEEDED":
            raise UsageError(f"pipeline run {self.id} already SUCCEEDED; nothing to resume")
        for s in self._state["steps"].values():
            if s["state"] in ("FAILED", "UPSTREAM_FAILED", "CANCELLED"):
                s.update(state="PENDING", message="", attempts=0)
        self._state["state"] = "PENDING"
        _spawn(self.dir, self._state)
        return self.status()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "steps": self.steps,
                "created_at": self._state.get("created_at")}


def _spawn(run_dir: Path, state: dict[str, Any]) -> None:
    from unijob.local import jobdir as jd

    with open(run_dir / "runner.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-u", "-m", "unijob.pipeline.runner", str(run_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, cwd=str(run_dir))
    state.update(runner_pid=proc.pid, runner_start_time=jd.proc_start_time(proc.pid))
    jd.write_json_atomic(run_dir / "state.json", state)


def run(pipeline: Union[str, Path, Any], *, target: Optional[str] = None, params: Optional[Mapping[str, Any]] = None,
        wait: bool = False) -> PipelineRun:
    """Start a run of ``pipeline`` (a pipeline file, or a :class:`unijob.pipeline.loading.Pipeline`)
    on this machine's DAG runner; steps go to ``target`` (default the pipeline's own).

    Args:
        params: parameter overrides (names must be declared in the pipeline).
        wait: block until the run ends.

    Raises:
        SpecError: the pipeline does not load or check. UsageError: an undeclared parameter.
    """
    from unijob.local import jobdir as jd
    from unijob.pipeline.loading import Pipeline, load_pipeline

    pipe = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    params = dict(params or {})
    unknown = sorted(set(params) - set(pipe.spec.parameters))
    if unknown:
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)}; the pipeline declares "
                         f"{', '.join(sorted(pipe.spec.parameters)) or 'none'}")
    for k, v in params.items():  # keep the declared type: "5" for an int parameter is 5
        declared = pipe.spec.parameters[k]
        if isinstance(v, str) and not isinstance(declared, str):
            try:
                params[k] = json.loads(v)
            except ValueError:
                raise UsageError(f"parameter {k}: expected a {type(declared).__name__}, got {v!r}") from None
    run_id = f"{pipe.spec.name[:40]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    d = runs_dir() / run_id
    d.mkdir(mode=0o700)
    jd.write_json_atomic(d / "pipeline.json", {"spec": pipe.spec.model_dump(mode="json", by_alias=True),
                                                "base_dir": str(pipe.base_dir), "params": params,
                                                "target": target or pipe.spec.target,
                                                "source": str(pipe.path) if pipe.path else None})
    state = {"run_id": run_id, "name": pipe.spec.name, "state": "PENDING", "created_at": time.time(),
             "steps": {n: {"state": "PENDING", "attempts": 0} for n in pipe.order}}
    _spawn(d, state)
    out = PipelineRun(d)
    if wait:
        out.wait()
    return out


def run_of(run_id: str) -> PipelineRun:
    """The run ``run_id`` (or a unique prefix of it).

    Raises:
        NotFound: no such run. UsageError: the prefix matches several runs.
    """
    d = runs_dir(create=False)
    if (d / run_id).is_dir():
        return PipelineRun(d / run_id)
    found = sorted(p for p in d.glob(f"{run_id}*") if p.is_dir()) if d.is_dir() else []
    if not found:
        raise NotFound(f"no pipeline run {run_id}", hint="unijob pipelines list shows them")
    if len(found) > 1:
        raise UsageError(f"'{run_id}' matches {len(found)} runs: {', '.join(p.name for p in found[:5])}")
    return PipelineRun(found[0])


def runs(limit: int = 50) -> list[PipelineRun]:
    """Pipeline runs started from here, newest first."""
    d = runs_dir(create=False)
    if not d.is_dir():
        return []
    dirs = sorted((p for p in d.iterdir() if (p / "state.json").exists()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    return [PipelineRun(p) for p in dirs[:limit]]
