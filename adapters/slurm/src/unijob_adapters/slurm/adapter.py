"""The ``slurm`` target: a training gang as one ``sbatch`` job whose batch script starts the ranks
with ``srun``, on a Slurm cluster reached on this machine or through a login node over SSH.

No Python dependency beyond unijob's core: Slurm's own commands (``sbatch --parsable``,
``scontrol show job``, ``squeue``, ``sacct``/``sacct -c``, ``scancel``, ``sinfo``, ``sacctmgr``)
through :class:`unijob_adapters.slurm.client.Runner`.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Any, Iterator, Optional

from unijob.contract import Adapter, JobHandle, JobState, JobStatus, Plan
from unijob.errors import NotFound, NotReady, Readiness, SpecError, SpecIssue, TargetError

from . import plan as _plan
from .client import Runner, first_state, parse_sacct, parse_scontrol_oneliner, shpath
from .logs import follow_logs, read_logs, tail_rank
from .options import SlurmOptions
from .runtime_env import SlurmEnv

#: Slurm job state (squeue(1) "JOB STATE CODES") -> unijob state.
STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED, "CONFIGURING": JobState.STARTING, "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING, "RESIZING": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "SUSPENDED": JobState.QUEUED, "STOPPED": JobState.QUEUED,
    "REQUEUED": JobState.RESTARTING, "REQUEUE_HOLD": JobState.RESTARTING, "REQUEUE_FED": JobState.RESTARTING,
    "PREEMPTED": JobState.RESTARTING, "RESV_DEL_HOLD": JobState.QUEUED,
    "COMPLETED": JobState.SUCCEEDED, "FAILED": JobState.FAILED, "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED, "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED, "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
}

_REFUSALS = (
    ("partition", re.compile(r"invalid partition", re.I)),
    ("qos", re.compile(r"invalid qos", re.I)),
    ("account", re.compile(r"invalid account", re.I)),
    ("gres", re.compile(r"invalid generic resource|gres", re.I)),
)
_TASK_EXIT = re.compile(r"srun: error: (\S+): tasks? (\d+)(?:-\d+)?: (Exited with exit code (\d+)|Killed|.*)")


class SlurmAdapter(Adapter):
    """Slurm, locally or over SSH.

    Args:
        env: extra environment for Slurm's commands run on this machine (tests set ``SLURM_CONF``).
        poll_interval: seconds between polls while following logs.
    """

    name = "slurm"
    options_model = SlurmOptions
    install_hint = "pip install 'unijob[slurm]'"
    runtime_env = SlurmEnv
    unsupported = {
        "image": "the slurm target runs script jobs with the cluster's Python; container images need a site "
                 "plugin (pyxis/enroot, Apptainer) whose options differ per cluster",
        "endpoint": "Slurm schedules batch jobs with a time limit; a long-lived autoscaled endpoint behind a "
                    "stable address is not something it offers. Deploy endpoints on kubernetes or a cloud target",
        "resources.max_nodes": "a Slurm allocation has a fixed node count (sbatch --nodes=N); elastic gangs "
                               "need heterogeneous jobs or a new allocation",
    }

    def __init__(self, env: Optional[dict[str, str]] = None, *, poll_interval: float = 1.0) -> None:
        self._env = dict(env or {})
        self.poll_interval = poll_interval

    def _runner(self, extra: dict[str, Any]) -> Runner:
        return Runner.from_extra(extra, env=self._env)

    # ---- readiness --------------------------------------------------------------------------

    def check(self, spec: Any = None) -> Readiness:
        """Can Slurm's commands be run? Locally: ``sbatch`` answers and ``sinfo`` reaches the
        controller. Over SSH: the login node answers and has ``sbatch``. Never raises."""
        opts: dict[str, Any] = spec.target_options(self.name) if spec is not None else {}
        try:
            o = SlurmOptions.model_validate(opts)
        except Exception:
            o = SlurmOptions()
        runner = Runner(login=o.login, port=o.ssh_port, identity=o.ssh_identity, options=tuple(o.ssh_options),
                        env=self._env, timeout=30)
        details = {"where": runner.where}
        try:
            rc, out, err = runner.text("command -v sbatch >/dev/null || { echo 'sbatch: not found' >&2; exit 127; }; "
                                       "sinfo -h -o %P")
        except NotReady as e:
            return Readiness(False, [e.message], details)
        except Exception as e:  # noqa: BLE001 - check never raises
            return Readiness(False, [f"cannot run Slurm's commands on {runner.where}: {e}"], details)
        if rc != 0:
            last = (err.strip().splitlines() or [f"exit {rc}"])[-1]
            return Readiness(False, [f"Slurm is not usable on {runner.where}: {last}"], details)
        details["partitions"] = ",".join(p.strip() for p in out.split())
        return Readiness(True, [], details)

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, spec: Any, submission_id: str) -> Plan:
        """See :mod:`unijob_adapters.slurm.plan` for the batch script and its rules."""
        if spec.resources.max_nodes and spec.resources.max_nodes != spec.resources.nodes:
            raise SpecError.at(("resources", "max_nodes"), self.unsupported["resources.max_nodes"])
        return _plan.build(spec, submission_id, self.options(spec), self.name)  # type: ignore[arg-type]

    def plan_endpoint(self, spec: Any) -> Plan:
        """Endpoints are not offered on Slurm; raises SpecError at ``endpoint`` with the reason."""
        raise SpecError.at(("endpoint",), self.unsupported["endpoint"])

    # ---- jobs -------------------------------------------------------------------------------

    def _find(self, runner: Runner, name: str, job_dir: str) -> Optional[str]:
        """The id of a job already submitted with this name (this submission key), if any:
        the job directory's ``submitted`` file, else ``squeue --name``."""
        cmd = (f"cat {shpath(job_dir)}/submitted 2>/dev/null; echo '--'; "
               f"squeue -h -t all --name={shlex.quote(name)} -o %i 2>/dev/null")
        rc, out, _ = runner.text(cmd)
        before, _, after = out.partition("--")
        ids = [x.strip().split(";")[0] for x in before.split()] + [x.strip() for x in after.split()]
        ids = [i for i in ids if i.isdigit()]
        return ids[0] if ids else None

    def submit(self, plan: Plan) -> JobHandle:
        """Stage the source and the runtime wheel (content-addressed, skipped when present), write
        the batch script into the job directory and ``sbatch --parsable`` it there.

        Idempotent: a job with this submission's name (found by ``squeue --name`` or the job
        directory's ``submitted`` file) is returned instead of a second ``sbatch``.

        Raises:
            NotReady: ssh cannot reach the login node. SpecError: the cluster has no such partition,
            QoS, account or GRES (the message lists the ones it has, and sbatch's own words).
            TargetError: any other refusal of sbatch, verbatim.
        """
        x = dict(plan.extra)
        runner = self._runner(x)
        body = plan.requests[0].body
        job_dir = body["cwd"]
        if x.get("dry_run"):
            return self._test_only(runner, plan)
        existing = self._find(runner, plan.name, job_dir)
        if existing is None:
            self._stage(runner, plan)
            env = self._secret_env(x)
            cmd = (f"mkdir -p {shpath(job_dir)} && cd {shpath(job_dir)} && cat > job.sbatch && "
                   "out=$(sbatch --parsable job.sbatch) && echo \"$out\" > submitted && echo \"$out\"")
            p = runner.run(cmd, input=body["script"].encode(), env=env)
            out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
            if p.returncode != 0:
                self._refused(runner, x, err.strip() or out.strip() or f"sbatch exited {p.returncode}")
            existing = out.strip().splitlines()[-1].split(";")[0]
        extra = {k: x.get(k) for k in ("login", "ssh_port", "ssh_identity", "ssh_options", "staging_dir", "job_dir",
                                       "nodes", "processes_per_node")}
        extra["job_id"] = existing
        return JobHandle(target=self.name, native_id=existing, name=plan.name, submission_id=plan.submission_id,
                         extra=extra)

    def _test_only(self, runner: Runner, plan: Plan) -> JobHandle:
        """``sbatch --test-only`` (sbatch(1): "validate the batch script and return an estimate of
        when a job would be scheduled to run ... No job is actually submitted"): nothing is staged,
        no job is created. Refusals raise as in :meth:`submit`."""
        x = dict(plan.extra)
        staging = shpath(x["staging_dir"])
        p = runner.run(f"cd {staging} 2>/dev/null || cd; sbatch --test-only", input=plan.requests[0].body["script"].encode(),
                       env=self._secret_env(x))
        err = p.stderr.decode("utf-8", "replace").strip()
        if p.returncode != 0:
            self._refused(runner, x, err or f"sbatch --test-only exited {p.returncode}")
        return JobHandle(target=self.name, native_id="dry-run", name=plan.name, submission_id=plan.submission_id,
                         extra={"dry_run": True, "answer": err.splitlines()[-1] if err else ""})

    def _secret_env(self, x: dict[str, Any]) -> dict[str, str]:
        import os

        out = {}
        for name, var in (x.get("secret_env") or {}).items():
            if var not in os.environ:
                raise NotReady(f"secret {name}: environment variable {var} is not set in this shell (env://{var})")
            out[name] = os.environ[var]
        return out

    def _stage(self, runner: Runner, plan: Plan) -> None:
        """Upload what the plan lists, skipping what the staging dir already holds (same hash)."""
        from unijob import bundle

        src, wheel_up = plan.uploads[0], plan.uploads[1]
        rc, out, _ = runner.text(f"test -d {shpath(src.destination)} && echo src; "
                                 f"test -f {shpath(wheel_up.destination)} && echo wheel; true")
        have = set(out.split())
        if "src" not in have:
            tarball = bundle.pack_dir(src.source, self._plan_extra_files(plan), exclude=src.exclude)
            if bundle.sha256(tarball) != src.sha256:
                raise TargetError(f"the source directory {src.source} changed since it was planned; plan again")
            dest = shpath(src.destination)
            cmd = (f"tmp={dest}.tmp.$$ && mkdir -p \"$tmp\" && tar -xzf - -C \"$tmp\" && "
                   f"{{ mv -T \"$tmp\" {dest} 2>/dev/null || rm -rf \"$tmp\"; }}")
            self._ok(runner.run(cmd, input=tarball), "uploading the source directory")
        if "wheel" not in have:
            wheel = bundle.runtime_wheel([self.name])
            if wheel.sha256 != wheel_up.sha256:
                raise TargetError("the installed unijob changed since the plan was made; plan again")
            dest = shpath(wheel_up.destination)
            cmd = (f"mkdir -p {shpath(wheel_up.destination.rsplit('/', 1)[0])} && tmp={dest}.tmp.$$ && "
                   f"cat > \"$tmp\" && mv -f \"$tmp\" {dest}")
            self._ok(runner.run(cmd, input=wheel.data), "uploading the runtime wheel")

    @staticmethod
    def _plan_extra_files(plan: Plan) -> dict[str, Any]:
        from pathlib import Path

        req = plan.extra.get("requirements_path")
        return {_plan.REQUIREMENTS_NAME: Path(req)} if req else {}

    @staticmethod
    def _ok(p: Any, what: str) -> None:
        if p.returncode != 0:
            raise TargetError(f"{what} failed: {p.stderr.decode('utf-8', 'replace').strip()}")

    def _refused(self, runner: Runner, x: dict[str, Any], message: str) -> None:
        """Turn sbatch's refusal into an error: a SpecError naming the partition, QoS, account or
        GRES type the cluster does not have and the ones it has (``sinfo``; ``sacctmgr`` where
        accounting runs), with sbatch's words; else a TargetError with sbatch's words."""
        for field, pattern in _REFUSALS:
            value = x.get(field)
            if not value or (field in ("qos", "account") and not pattern.search(message)):
                continue
            have = self._cluster_names(runner, field)
            wanted = str(value).split(",") if field == "partition" else [str(value)]
            unknown = [v for v in wanted if v not in have]
            if have and not unknown:
                continue
            if field == "partition" and unknown and unknown[0] == x.get("spot_partition_name"):
                loc: tuple = ("targets", self.name, "spot_partition")
            else:
                loc = ("targets", self.name, field)
            listing = f"; the cluster has: {', '.join(have)}" if have else ""
            what = {"gres": "GRES type", "qos": "QoS"}.get(field, field)
            raise SpecError([SpecIssue(loc, f"{what} '{','.join(unknown) or value}' is not on the cluster{listing} "
                                            f"(sbatch: {message})")])
        raise TargetError(message)

    def _cluster_names(self, runner: Runner, field: str) -> list[str]:
        """Names the cluster has for ``field``, from ``sinfo`` (partitions, GRES) or ``sacctmgr``
        (QoS, accounts; empty without slurmdbd)."""
        cmd = {"partition": "sinfo -h -o %R",
               "gres": "sinfo -h -o %G",
               "qos": "sacctmgr -nP show qos format=name",
               "account": "sacctmgr -nP show account format=account"}[field]
        try:
            rc, out, _ = runner.text(cmd + " 2>/dev/null")
        except Exception:  # noqa: BLE001 - the listing is a courtesy
            return []
        if rc != 0:
            return []
        names: set[str] = set()
        for word in out.split():
            if field == "gres":
                for g in word.split(","):
                    parts = g.split("(")[0].split(":")
                    if len(parts) >= 3 and parts[0] == "gpu":
                        names.add(parts[1])
            elif word and word != "(null)":
                names.add(word)
        return sorted(names)

    def status(self, handle: JobHandle) -> JobStatus:
        """From ``scontrol show job -o`` (while Slurm remembers the job, ``MinJobAge``), else
        ``sacct`` (or ``sacct -c``, the completion log, when accounting storage is off); restarts
        from Slurm's ``Restarts`` and the job directory's ``attempts`` file. A FAILED job's message
        names the failing rank and its last lines.

        Raises:
            NotFound: Slurm has no record of the job.
        """
        x = handle.extra
        if x.get("dry_run"):
            return JobStatus(JobState.CANCELLED, "DryRun", f"sbatch --test-only: {x.get('answer', '')}; nothing was submitted")
        runner = self._runner(x)
        jid = handle.native_id
        job_dir = shpath(x["job_dir"])
        rc, out, err = runner.text(f"scontrol show job -o {shlex.quote(jid)} 2>&1; echo '--attempts--'; "
                                   f"cat {job_dir}/attempts 2>/dev/null")
        info_text, _, attempts = out.partition("--attempts--")
        restarts = max([int(line.split()[1]) for line in attempts.splitlines() if len(line.split()) >= 2
                        and line.split()[1].isdigit()] or [0])
        info = parse_scontrol_oneliner(info_text.strip().splitlines()[0]) if info_text.strip() else {}
        if "JobState" in info:
            native = first_state(info["JobState"])
            restarts = max(restarts, int(info.get("Restarts", "0") or 0))
            reason = info.get("Reason", "")
            exit_code = _exit(info.get("ExitCode"))
            started, ended = _ts(info.get("StartTime")), _ts(info.get("EndTime"))
        else:
            row = self._accounting(runner, jid)
            if row is None:
                raise NotFound(f"Slurm has no job {jid} (neither scontrol nor sacct knows it)")
            native, reason = first_state(row.get("State", "")), ""
            exit_code = _exit(row.get("ExitCode"))
            started, ended = _ts(row.get("Start")), _ts(row.get("End"))
        state = STATES.get(native, JobState.RUNNING)
        if state is JobState.QUEUED and restarts:
            state = JobState.RESTARTING
        msg = f"{native}" + (f" ({reason})" if reason and reason != "None" else "")
        if state is JobState.FAILED:
            msg = self._failure_message(runner, x, jid, native, exit_code) or msg
        final = state.is_final
        return JobStatus(state, native, msg, restarts, exit_code if final else None, started,
                         ended if final else None)

    def _accounting(self, runner: Runner, jid: str) -> Optional[dict[str, str]]:
        fields = ["JobID", "State", "ExitCode", "Start", "End"]
        fmt = ",".join(fields)
        for flag in ("-X", "-c"):
            rc, out, _ = runner.text(f"sacct {flag} -n -P -j {shlex.quote(jid)} -o {fmt} 2>/dev/null")
            if rc == 0:
                rows = [r for r in parse_sacct(out, fields) if r["JobID"].split(".")[0] == jid]
                if rows:
                    return rows[-1]
        return None

    def _failure_message(self, runner: Runner, x: dict[str, Any], jid: str, native: str,
                         exit_code: Optional[int]) -> str:
        """``"rank 1 exited with code 3; its last lines: ..."`` from the batch output's srun errors."""
        rc, out, _ = runner.text(f"cat {shpath(x['job_dir'])}/slurm-{shlex.quote(jid)}.out 2>/dev/null")
        for line in out.splitlines():
            m = _TASK_EXIT.search(line)
            if m and (m.group(4) or "Killed" in line):
                rank = int(m.group(2))
                how = f"exited with code {m.group(4)}" if m.group(4) else "was killed"
                last = tail_rank(runner, x["job_dir"], rank, 10)
                text = f"{native}: rank {rank} {how} on {m.group(1)}"
                return text + (";\n  its last lines:\n    " + "\n    ".join(last) if last else "")
        tail = [line for line in out.splitlines() if line.strip()][-5:]
        return f"{native}" + (f" (exit code {exit_code})" if exit_code is not None else "") + \
            (":\n    " + "\n    ".join(tail) if tail else "")

    def logs(self, handle: JobHandle, *, follow: bool = False) -> Iterator[str]:
        """Each rank's lines, prefixed ``[rank i]``, and the batch script's own lines as
        ``[batch]``; ``follow`` keeps reading the output files until the job is final."""
        if handle.extra.get("dry_run"):
            return iter(())
        runner = self._runner(handle.extra)
        if not follow:
            return iter(read_logs(runner, handle.extra["job_dir"]))
        return follow_logs(runner, handle.extra["job_dir"], lambda: self._final(handle), self.poll_interval)

    def _final(self, handle: JobHandle) -> bool:
        try:
            return self.status(handle).state.is_final
        except NotFound:
            return True

    def cancel(self, handle: JobHandle) -> None:
        """``scancel`` the job (every step and the batch script). A finished job is not an error."""
        if handle.extra.get("dry_run"):
            return
        runner = self._runner(handle.extra)
        rc, out, err = runner.text(f"scancel {shlex.quote(handle.native_id)}")
        if rc != 0 and not re.search(r"already completed|invalid job id|job has finished", err, re.I):
            raise TargetError(f"scancel {handle.native_id}: {err.strip()}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                st = self.status(handle)
            except NotFound:
                return
            if st.state.is_final:
                return
            time.sleep(0.5)


def _exit(value: Optional[str]) -> Optional[int]:
    """``ExitCode=3:0`` (exit status : signal) -> 3, or 128+signal when killed by one."""
    if not value or ":" not in value:
        return None
    code, _, sig = value.partition(":")
    try:
        return int(code) if int(code) or not int(sig) else 128 + int(sig)
    except ValueError:
        return None


def _ts(value: Optional[str]) -> Optional[float]:
    if not value or value in ("Unknown", "None", "N/A"):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None

