"""The ``ray`` target: a training gang as one Ray job (the Jobs API) whose entrypoint, unijob's gang
launcher (:mod:`unijob_ray_gang`), reserves a placement group and starts one process per rank.

Ray is reached only through ``ray.job_submission.JobSubmissionClient`` at ``targets.ray.address``
(``submit_job``, ``get_job_info``, ``get_job_logs``, ``tail_job_logs``, ``stop_job``) and the
dashboard's state API (``ray.util.state.list_nodes``) for the refusal of a gang the cluster can
never place. ``ray`` is imported inside methods only.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Iterator, Optional

from unijob.contract import Adapter, JobHandle, JobState, JobStatus, Plan
from unijob.errors import NotFound, NotReady, Readiness, SpecError, SpecIssue, TargetError

from . import plan as _plan
from .client import INSTALL, alive_nodes, fits, job_client, resolve_address, tail_lines
from .options import RayOptions
from .runtime_env import RayEnv

#: Ray's ``JobStatus`` (ray.job_submission.JobStatus) -> unijob state.
STATES: dict[str, JobState] = {
    "PENDING": JobState.STARTING, "RUNNING": JobState.RUNNING, "STOPPED": JobState.CANCELLED,
    "SUCCEEDED": JobState.SUCCEEDED, "FAILED": JobState.FAILED,
}
_RESTART = re.compile(r"^\[unijob\] restart (\d+)/(\d+): ")
_LOST = re.compile(r"^\[unijob\] node \d+ of the gang was lost")
_RUNNING = re.compile(r"^\[unijob\] gang running")
_WAITING = re.compile(r"^\[unijob\] (waiting for the gang|still waiting)")
_FAILED = re.compile(r"^\[unijob\] FAILED: (.*)$")


class RayAdapter(Adapter):
    """A Ray cluster through its Jobs API.

    Args:
        poll_interval: seconds between polls while following logs of a job whose stream closed early.
    """

    name = "ray"
    options_model = RayOptions
    install_hint = INSTALL
    runtime_env = RayEnv
    unsupported = {
        "image": "the ray target runs script jobs on the cluster's Python; per-job container images need Ray's "
                 "experimental image_uri runtime env (podman on every node), which unijob does not drive",
        "resources.max_nodes": "a gang is one placement group of a fixed number of bundles; Ray Train's elastic "
                               "training is a different API",
        "endpoint": "endpoints on Ray Serve are not offered yet: unijob has no Serve application (one deployment "
                    "per variant with autoscaling_config, a traffic-splitting ingress) proven on a real cluster; "
                    "deploy endpoints on the local, kubernetes or a cloud target",
        "registry": "Ray has no model registry; use the local target's MLflow registry or a cloud one",
    }

    def __init__(self, *, poll_interval: float = 1.0) -> None:
        self.poll_interval = poll_interval

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        """Is ray installed and does a Ray Jobs API answer at the address? Never raises."""
        opts: dict[str, Any] = spec.target_options(self.name) if spec is not None else {}
        try:
            address = resolve_address(RayOptions.model_validate(opts).address)
        except Exception:  # noqa: BLE001
            address = resolve_address(None)
        details = {"address": address}
        try:
            client = job_client(address)
            details["ray_version"] = str(client.get_version())
        except NotReady as e:
            return Readiness(False, [e.message], details)
        except Exception as e:  # noqa: BLE001 - check never raises
            return Readiness(False, [f"the Ray Jobs API at {address} failed: {e.__class__.__name__}"], details)
        return Readiness(True, [], details)

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        """See :mod:`unijob_adapters.ray.plan`."""
        return _plan.build(spec, submission_id, self.options(spec), self.name)  # type: ignore[arg-type]

    def plan_endpoint(self, spec: Any) -> Plan:
        """Refused: see ``unsupported["endpoint"]``.

        Raises:
            SpecError: at ``endpoint``, with the reason.
        """
        raise SpecError.at(("endpoint",), f"target 'ray' does not serve endpoints: {self.unsupported['endpoint']}")

    # ---- jobs -------------------------------------------------------------------------------

    def submit(self, plan: Plan) -> JobHandle:
        """Refuse a gang the cluster can never place, write the runtime wheel, then ``submit_job``.

        Idempotent: a job with the plan's ``submission_id`` already on the cluster is returned (Ray
        itself refuses a second job with the same ``submission_id``). A dry run checks the address
        and the gang's fit, and submits nothing.

        Raises:
            NotReady: nothing answers at the address (named), or ray is missing.
            SpecError: the gang needs more than the cluster has (both numbers), at ``resources``.
            TargetError: Ray refused the job (its words).
        """
        from unijob import bundle

        x = dict(plan.extra)
        address = resolve_address(x.get("address"))
        client = job_client(address)
        body = plan.requests[0].body
        sid = body["submission_id"]
        handle = JobHandle(target=self.name, native_id=sid, name=plan.name, submission_id=plan.submission_id,
                           extra={"address": address})
        if self._info(client, sid) is not None:
            return handle
        self._check_fit(address, x)
        if x.get("dry_run"):
            handle.extra["dry_run"] = True
            return handle
        _write_launcher(x["launcher_dir"], _plan.launcher_files(bundle.runtime_wheel([self.name])))
        runtime_env = dict(body["runtime_env"])
        env_vars = dict(runtime_env.get("env_vars") or {})
        for name, var in (x.get("secret_env") or {}).items():
            if var not in os.environ:
                raise NotReady(f"secret {name}: environment variable {var} is not set in this shell (env://{var})")
            env_vars[name] = os.environ[var]
        runtime_env["env_vars"] = env_vars
        kwargs = {k: v for k, v in body.items() if k != "runtime_env"}
        try:
            client.submit_job(runtime_env=runtime_env, **kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises RuntimeError with the server's words
            if self._info(client, sid) is not None:  # a concurrent submit of the same key won
                return handle
            raise TargetError(f"Ray refused the job: {_first_line(e)}") from None
        return handle

    def _check_fit(self, address: str, x: dict[str, Any]) -> None:
        """A gang of ``nodes`` bundles needs ``nodes`` distinct nodes (STRICT_SPREAD) or one node
        (PACK) that can each hold a bundle; refuse at once, instead of waiting out max_wait."""
        try:
            nodes = alive_nodes(address)
        except Exception:  # noqa: BLE001 - the state API is a courtesy; the launcher still waits
            return
        b, want = x["bundle"], int(x["nodes"])
        able = [n for n in nodes if fits(b, n["resources"])]
        if len(able) >= want:
            return
        totals: dict[str, float] = {}
        for n in nodes:
            for k, v in n["resources"].items():
                totals[k] = totals.get(k, 0.0) + v
        shown = ", ".join(f"{k} {_num(totals.get(k, 0.0))}" for k in b)
        need = ", ".join(f"{k} {_num(v)}" for k, v in b.items())
        raise SpecError([SpecIssue(("resources",),
                                   f"the gang needs {want} node(s) each with {need}; the Ray cluster at {address} has "
                                   f"{len(nodes)} node(s), {len(able)} of which can hold one (cluster totals: {shown})")])

    @staticmethod
    def _info(client: Any, sid: str) -> Any:
        try:
            return client.get_job_info(sid)
        except RuntimeError as e:
            if "does not exist" in str(e) or "404" in str(e):
                return None
            raise TargetError(f"Ray: {_first_line(e)}") from None

    def _client(self, handle: JobHandle) -> Any:
        return job_client(handle.extra.get("address") or resolve_address(None))

    def status(self, handle: JobHandle) -> JobStatus:
        """Ray's job status, with restarts and the waiting/relaunching phases read from the gang
        launcher's ``[unijob]`` lines; a FAILED job's message names the failing rank and its last lines.

        Raises:
            NotFound: the cluster has no job with this submission id.
        """
        if handle.extra.get("dry_run"):
            return JobStatus(JobState.CANCELLED, "DryRun", "dry run: the address answered and the gang fits; "
                                                           "nothing was submitted")
        client = self._client(handle)
        info = self._info(client, handle.native_id)
        if info is None:
            raise NotFound(f"Ray has no job {handle.native_id} at {handle.extra.get('address')}")
        native = str(getattr(info.status, "value", info.status))
        state = STATES.get(native, JobState.RUNNING)
        try:
            text = client.get_job_logs(handle.native_id)
        except Exception:  # noqa: BLE001
            text = ""
        restarts, phase, failure = _read_launcher(text)
        msg = info.message or ""
        if state is JobState.RUNNING and phase == "waiting":
            state = JobState.QUEUED
        elif state is JobState.RUNNING and phase == "lost":
            state = JobState.RESTARTING
        if state is JobState.FAILED and failure:
            msg = failure
        started = info.start_time / 1000.0 if info.start_time else None
        ended = info.end_time / 1000.0 if info.end_time else None
        code = getattr(info, "driver_exit_code", None)
        return JobStatus(state, native, msg, restarts, code if state.is_final else None, started, ended)

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        """The job's log (the launcher's ``[unijob]`` lines and every rank's ``[rank N]`` lines);
        with ``follow``, ``tail_job_logs`` until the job is final."""
        if handle.extra.get("dry_run"):
            return
        client = self._client(handle)
        if not follow:
            yield from client.get_job_logs(handle.native_id).splitlines()
            return
        yield from tail_lines(client, handle.native_id)

    def cancel(self, handle: JobHandle, *, wait: float = 20.0) -> None:
        """``stop_job``: the launcher gets SIGTERM, forwards it to every rank and stops the gang.
        Returns once Ray reports the job final (STOPPED about 2.5 s later), or after ``wait`` seconds."""
        if handle.extra.get("dry_run"):
            return
        client = self._client(handle)
        info = self._info(client, handle.native_id)
        if info is None:
            raise NotFound(f"Ray has no job {handle.native_id}")
        if str(getattr(info.status, "value", info.status)) in ("STOPPED", "SUCCEEDED", "FAILED"):
            return
        try:
            client.stop_job(handle.native_id)
        except Exception as e:  # noqa: BLE001
            raise TargetError(f"Ray could not stop {handle.native_id}: {_first_line(e)}") from None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            info = self._info(client, handle.native_id)
            if info is None or str(getattr(info.status, "value", info.status)) in ("STOPPED", "SUCCEEDED", "FAILED"):
                return
            time.sleep(0.25)


def _write_launcher(directory: str, files: dict[str, bytes]) -> None:
    """Write the launcher package (content-addressed; an existing complete copy is kept).

    Raises:
        TargetError: the installed unijob changed since the plan was made (another directory).
    """
    import shutil
    from pathlib import Path

    d = Path(directory)
    if _plan.launcher_dir(files) != d:
        raise TargetError("the installed unijob or unijob-ray changed since the plan was made; plan again")
    if d.is_dir() and all((d / n).is_file() for n in files):
        return
    tmp = d.with_name(f".{d.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    try:
        os.rename(tmp, d)
    except OSError:  # written meanwhile by another submit
        shutil.rmtree(tmp, ignore_errors=True)


def _read_launcher(text: str) -> tuple[int, str, str]:
    """(restarts, phase, failure) from the launcher's lines: phase is ``waiting``, ``running`` or
    ``lost`` (the latest of them); failure is its FAILED line with the lines after it."""
    restarts, phase, failure = 0, "", ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := _RESTART.match(line):
            restarts = int(m.group(1))
        elif _LOST.match(line):
            phase = "lost"
        elif _RUNNING.match(line):
            phase = "running"
        elif _WAITING.match(line) and phase != "lost":
            phase = "waiting"
        elif m := _FAILED.match(line):
            tail = [ln[len("[unijob]   "):] for ln in lines[i + 1:] if ln.startswith("[unijob]   ")]
            failure = m.group(1) + ("\n" + "\n".join(tail) if tail else "")
    return restarts, phase, failure


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else e.__class__.__name__
