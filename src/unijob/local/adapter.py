"""The local target: the default when no ``--target`` is given.

Runs the gang as ``nodes x processes_per_node`` processes on this machine under a detached
supervisor (:mod:`unijob.local.supervisor`), so ``status``, ``logs`` and ``cancel`` work from any
shell and the job outlives the CLI that submitted it. Every rank gets torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) and unijob's ``UNIJOB_*`` contract,
which :mod:`unijob.runtime` reads as its default, so the target needs no :class:`RuntimeEnv`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Optional

from unijob.contract import (Adapter, EndpointHandle, EndpointStatus, InvokeResult, JobHandle, JobState, JobStatus,
                             NativeRequest, Plan, PlanResources)
from unijob.errors import NotFound, Readiness, TargetError, UsageError
from unijob.local import jobdir as jd
from unijob.local.options import LocalOptions
from unijob.local.plan import build_body, native_name
from unijob.local.registry import LocalRegistry
from unijob.paths import local_jobs_dir

API = "local:launch"


class LocalAdapter(LocalRegistry, Adapter):
    """Runs a job's gang as processes on this machine. See the module docstring.

    Unsupported features are listed in :attr:`unsupported` with the reason; accelerators are a
    warning, not an error: the gang runs on CPU.
    """

    name: ClassVar[str] = "local"
    options_model: ClassVar[type[LocalOptions]] = LocalOptions
    install_hint: ClassVar[str] = "pip install unijob"
    runtime_env = None
    unsupported: ClassVar[Mapping[str, str]] = {
        "endpoint.image": "local endpoints run unijob handlers (endpoint.handler) as processes; serving "
                          "images need a container runtime this target does not use",
        "endpoint.autoscaling.metric=gpu_utilization/cpu_utilization": "the local router scales on what it "
                          "measures itself: concurrency or invocations_per_replica_per_minute",
        "image": "no container runtime is available on this machine; script jobs run directly, and "
                 "targets.local.run_image_command: true runs an image job's command + args on the host",
        "resources.accelerator": "the local target assigns no accelerators; a spec asking for them plans "
                                 "with a warning and the gang runs on CPU",
        "requirements": "the local target does not install requirements; it runs the script with "
                        "targets.local.python, into which you install them",
        "spot.max_wait": "there is no capacity to wait for on this machine; the gang starts at once",
    }

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        problems: list[str] = []
        details: dict[str, str] = {"python": sys.executable}
        try:
            if not (sys.executable and os.access(sys.executable, os.X_OK)):
                problems.append(f"the Python interpreter {sys.executable!r} is not executable")
            details["home"] = str(local_jobs_dir(create=False))
            if not sys.platform.startswith("linux"):
                details["note"] = "no PR_SET_PDEATHSIG here: ranks outlive a killed supervisor until cancel"
        except Exception as e:  # never raise from check()
            problems.append(f"{e.__class__.__name__}: {e}".replace("\n", " "))
        return Readiness(ready=not problems, problems=problems, details=details)

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        """One ``local:launch`` request (body described in :mod:`unijob.local.plan`).

        Raises:
            SpecError: bad ``targets.local`` options; ``simulate_preemption`` with an on-demand
                policy; an ``image`` job without ``run_image_command`` (at ``image``).
        """
        opts = self.options(spec)
        body, notes, warnings = build_body(spec, submission_id, opts)
        name = native_name(spec.name, submission_id)
        return Plan(
            target=self.name, name=name, submission_id=submission_id,
            requests=[NativeRequest(api=API, body=body,
                                    note=f"{body['world_size']} ranks ({body['nodes']} nodes x "
                                         f"{body['processes_per_node']}) under a supervisor on this machine")],
            resources=PlanResources(service="local", instance_type="localhost", instance_count=body["nodes"],
                                    hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy),
            notes=notes, warnings=warnings, extra={"job_dir": body["job_dir"]},
        )

    def plan_batch(self, spec: Any, submission_id: str) -> Plan:
        """Batch prediction here: :mod:`unijob.batch.runner` under the job supervisor
        (:func:`unijob.local.batch.plan_batch`)."""
        from unijob.local.batch import plan_batch

        return plan_batch(spec, submission_id, self.options(spec))

    # ---- jobs -------------------------------------------------------------------------------

    def submit(self, plan: Plan) -> JobHandle:
        """Start the plan's supervisor; a second submit of the same plan starts nothing.

        With ``plan.extra["dry_run"]`` nothing is written or started: :meth:`dry_run` checks
        what a launch needs, and the handle returned has ``extra["dry_run"]`` set.

        Raises:
            UsageError: the plan is for another target. TargetError: the supervisor did not start.
            NotReady: (dry run) something the launch needs is missing.
        """
        from unijob.local.supervisor import submit as start

        if plan.target != self.name:
            raise UsageError(f"this plan is for target '{plan.target}', not '{self.name}'")
        job_dir = Path(plan.request(API).body["job_dir"])
        if plan.extra.get("dry_run"):
            self.dry_run(plan)
            return JobHandle(target=self.name, native_id=plan.name, name=plan.name,
                             submission_id=plan.submission_id, extra={"job_dir": str(job_dir), "dry_run": True})
        try:
            start(plan.model_dump(mode="json"), job_dir)
        except (OSError, RuntimeError) as e:
            raise TargetError(f"local job {plan.name} did not start: {e}") from None
        return JobHandle(target=self.name, native_id=plan.name, name=plan.name,
                         submission_id=plan.submission_id, extra={"job_dir": str(job_dir)})

    def dry_run(self, plan: Plan) -> None:
        """What ``submit`` would need, checked without writing or starting anything: the gang
        size (:func:`unijob.local.plan.max_ranks`), the rank command's program, the working
        directory, a writable job home, and every ``env://`` secret set in this environment.

        Raises:
            NotReady: each problem found, one per line.
        """
        import shutil

        from unijob.errors import NotReady
        from unijob.local.plan import max_ranks

        body = plan.request(API).body
        problems: list[str] = []
        limit, reason = max_ranks()
        if body["world_size"] > limit:
            problems.append(f"{body['world_size']:,} ranks; at most {limit:,} start here ({reason})")
        prog = body["argv"][0] if body["argv"] else ""
        if not (shutil.which(prog) if os.sep not in prog else os.access(prog, os.X_OK)):
            problems.append(f"the rank command {prog!r} is not an executable program here")
        if not os.path.isdir(body["cwd"]):
            problems.append(f"the working directory {body['cwd']} does not exist")
        home = Path(body["job_dir"]).parent
        existing = next((d for d in (home, *home.parents) if d.exists()), None)
        if existing is None or not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"cannot create job directories under {home} ({existing} is not writable)")
        for name, ref in sorted(body.get("secret_refs", {}).items()):
            if ref.startswith("env://") and ref[len("env://"):] not in os.environ:
                problems.append(f"secret {name}: environment variable {ref[len('env://'):]} is not set here "
                                f"(secrets.{name}: {ref}); the launch would fail")
        if problems:
            raise NotReady(f"dry run: local would not start {plan.name}:\n  " + "\n  ".join(problems))

    def _job_dir(self, handle: JobHandle) -> Path:
        d = Path(handle.extra.get("job_dir") or local_jobs_dir(create=False) / handle.native_id)
        if not (d / "plan.json").exists():
            raise NotFound(f"no local job {handle.native_id} (looked in {d})")
        return d

    def status(self, handle: JobHandle) -> JobStatus:
        """The job's state from ``state.json``; a dead supervisor with a non-final state is FAILED
        ("supervisor died"), and its ranks' process groups are killed.

        Raises:
            NotFound: no such job directory.
        """
        d = self._job_dir(handle)
        st = jd.read_json(d / "state.json")
        if (st is None or st["state"] not in jd.FINAL) and not jd.supervisor_alive(d):
            st = jd.read_json(d / "state.json")  # it may have finished between the two reads
        if (st is None or st["state"] not in jd.FINAL) and not jd.supervisor_alive(d):
            if jd.read_pid(d) is None and st is None:
                return JobStatus(state=JobState.QUEUED, native_state="SUBMITTING", message="supervisor not started")
            st = self._mark_dead(d, st, "FAILED", "supervisor died; the gang was stopped")
        if st is None:
            return JobStatus(state=JobState.QUEUED, native_state="QUEUED", message="supervisor starting")
        return JobStatus(state=JobState(st["state"]), native_state=st["state"], message=st.get("message", ""),
                         restarts=st.get("restarts", 0), exit_code=st.get("exit_code"),
                         started_at=st.get("started_at"), ended_at=st.get("ended_at"))

    def _mark_dead(self, d: Path, st: Optional[dict], state: str, message: str) -> dict:
        """Kill what a dead supervisor left (pids checked by start time) and record a final state."""
        st = dict(st or {"restarts": 0, "ranks": [], "history": []})
        for r in st.get("ranks", []):
            if r.get("pid") and jd.alive(r["pid"], r.get("start_time")):
                try:
                    os.killpg(r["pgid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        st.update(state=state, message=message, ended_at=time.time())
        st.setdefault("history", []).append([state, time.time()])
        jd.write_json_atomic(d / "state.json", st)
        return st

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        """Every rank's log lines prefixed ``[rank i] `` (rank order per read; with ``follow``,
        interleaved as written, until the job is final and every log is drained).

        Raises:
            NotFound: no such job directory.
        """
        d = self._job_dir(handle)
        plan = jd.read_json(d / "plan.json") or {}
        world = int(plan["requests"][0]["body"]["world_size"])
        pos = [0] * world
        partial = [b""] * world
        while True:
            final = not follow or self.status(handle).state.is_final
            for i in range(world):
                try:
                    with open(d / f"rank-{i}.log", "rb") as f:
                        f.seek(pos[i])
                        data = f.read()
                except FileNotFoundError:
                    continue
                pos[i] += len(data)
                *lines, partial[i] = (partial[i] + data).split(b"\n")
                for line in lines:
                    yield f"[rank {i}] {line.decode(errors='replace')}"
            if final:
                for i in range(world):
                    if partial[i]:
                        yield f"[rank {i}] {partial[i].decode(errors='replace')}"
                return
            time.sleep(0.2)

    def cancel(self, handle: JobHandle, *, wait: Optional[float] = None) -> None:
        """Stop the gang: SIGTERM to the supervisor, which stops every rank (grace, then SIGKILL) and
        records CANCELLED. Waits up to ``wait`` seconds (default the plan's grace + 3 s) for that.
        A finished job is left as it is; with a dead supervisor the ranks are killed here.

        Raises:
            NotFound: no such job directory.
        """
        d = self._job_dir(handle)
        st = jd.read_json(d / "state.json")
        if st is not None and st["state"] in jd.FINAL:
            return
        if not jd.supervisor_alive(d):
            st = jd.read_json(d / "state.json")
            if st is not None and st["state"] in jd.FINAL:
                return
            if jd.read_pid(d) is not None or st is not None:
                self._mark_dead(d, st, "CANCELLED", "cancelled (the supervisor was no longer running)")
            return
        try:
            os.kill(jd.read_pid(d), signal.SIGTERM)
        except ProcessLookupError:
            return
        plan = jd.read_json(d / "plan.json") or {}
        grace = float(plan["requests"][0]["body"].get("grace", 10))
        deadline = time.monotonic() + (grace + 3 if wait is None else wait)
        while time.monotonic() < deadline:
            st = jd.read_json(d / "state.json")
            if (st and st["state"] in jd.FINAL) or not jd.supervisor_alive(d):
                return
            time.sleep(0.05)

    def model_artifact(self, handle: JobHandle) -> str:
        """The job's output: the directory its ranks got as ``UNIJOB_OUTPUT_DIR`` (the spec's
        ``output``, else ``<job dir>/output``), or the spec's remote ``output`` URI.

        Raises:
            NotFound: no such job directory. UsageError: the output directory is missing or empty.
        """
        d = self._job_dir(handle)
        body = (jd.read_json(d / "plan.json") or {})["requests"][0]["body"]
        out = body.get("output_dir")
        if not out:
            return body["output_uri"]
        if not Path(out).is_dir() or not any(Path(out).iterdir()):
            raise UsageError(f"local job {handle.native_id} wrote no model: its output directory {out} is "
                             + ("empty" if Path(out).is_dir() else "missing"))
        return out

    def output_location(self, handle: JobHandle) -> Optional[str]:
        """The job's output directory (or remote output URI), whether or not it holds files."""
        body = (jd.read_json(self._job_dir(handle) / "plan.json") or {})["requests"][0]["body"]
        return body.get("output_dir") or body.get("output_uri")

    def job_metrics(self, handle: JobHandle) -> dict[str, Any]:
        """What the job's rank 0 logged with ``unijob.runtime.log_metrics`` (its output dir's metrics.json)."""
        from unijob.runtime.metrics import read_metrics

        out = self.output_location(handle)
        return read_metrics(out) if out and "://" not in out else {}

    # ---- endpoints (router + replica processes; see unijob.local.router) -------------------------

    def plan_endpoint(self, spec: Any) -> Plan:
        """One ``local:deploy`` request (:mod:`unijob.local.serving`).

        Raises:
            SpecError: no endpoint; a variant given as an image or without a handler; an
                autoscaling metric other than concurrency or invocations_per_replica_per_minute.
        """
        from unijob.local.serving import plan_endpoint

        return plan_endpoint(spec, self.options(spec))

    def deploy(self, plan: Plan) -> EndpointHandle:
        """Start the router and ``min_replicas`` per variant; returns once all answer ``/ping``.

        Raises:
            UsageError: already running. TargetError: a replica failed to start (log tail in the
                message) or the deploy timed out; nothing is left running.
        """
        from unijob.local import endpoints

        if plan.target != self.name or plan.kind != "endpoint":
            raise UsageError(f"this is a {plan.kind} plan for target '{plan.target}', not a local endpoint plan")
        return endpoints.deploy(plan)

    def endpoint_status(self, handle: EndpointHandle) -> EndpointStatus:
        from unijob.local import endpoints

        return endpoints.status(handle)

    def set_traffic(self, handle: EndpointHandle, split: Mapping[str, int]) -> None:
        from unijob.local import endpoints

        endpoints.set_traffic(handle, split)

    def undeploy(self, handle: EndpointHandle) -> None:
        from unijob.local import endpoints

        endpoints.undeploy(handle)

    def invoke(self, handle: EndpointHandle, payload: Any, *, variant: Optional[str] = None,
               timeout: float = 60.0) -> InvokeResult:
        from unijob.local import endpoints

        return endpoints.invoke(handle, payload, variant=variant, timeout=timeout)


__all__ = ["LocalAdapter", "LocalOptions"]
