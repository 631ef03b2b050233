"""The supervisor: a detached process that owns one local gang, and :func:`submit`, which starts it.

``submit`` writes ``<job_dir>/plan.json`` and runs ``python -m unijob.local.supervisor <job_dir>``
in a new session with stdin from /dev/null and output to ``supervisor.log``. That process forks
once and its parent exits, so the supervisor is nobody's child in the submitting process (no
zombie there) and outlives the CLI. It writes its pid to ``supervisor.pid`` (the "submitted"
mark that makes a second submit of the same plan a no-op) and then:

1. resolves ``env://`` secrets from its own environment (the submitting shell's); values live only
   in the ranks' environments, never in a file;
2. launches the ranks (:mod:`unijob.local.gang`) and writes ``state.json`` atomically on every
   change: ``QUEUED`` -> ``RUNNING`` [-> ``RESTARTING`` -> ``RUNNING``]... -> ``SUCCEEDED`` |
   ``FAILED`` | ``CANCELLED`` (``STOPPING`` while a cancel stops the gang);
3. watches them. Gang semantics: the first rank to exit non-zero stops every other rank and fails
   the job with that rank's exit code and log tail. A rank failure is not retried (a deterministic
   failure would only repeat; torchrun's default ``--max-restarts`` is 0 too): only preemptions
   restart. ``max_run`` counts wall-clock seconds from the first launch, restarts included.
   Simulated preemption: ``simulate_preemption`` seconds after each (re)start, SIGTERM to every
   rank (the notice), ``grace``, SIGKILL, then a relaunch with the restart count incremented, at
   most ``max_restarts`` times; ranks exiting 0 after the notice count as preempted. SIGTERM or
   SIGINT to the supervisor is a cancel.

Only the standard library is imported here: the supervisor starts fast.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from unijob.local import gang
from unijob.local.jobdir import FINAL, proc_start_time, read_json, read_pid, tail, write_json_atomic

POLL = 0.02  # seconds between checks of the ranks


def submit(plan_data: dict[str, Any], job_dir: Path, *, wait: float = 10.0) -> bool:
    """Create the job directory and start its supervisor, unless that was done already.

    Args:
        plan_data: the plan as JSON data (``Plan.model_dump(mode="json")``).
        job_dir: ``<home>/local/jobs/<native_id>``.
        wait: seconds to wait for the supervisor to report its pid.

    Returns:
        True when this call started the supervisor, False when it already was.

    Raises:
        RuntimeError: the supervisor did not start (its log says why).
    """
    job_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(job_dir / "submit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_pid(job_dir) is not None:
            return False
        write_json_atomic(job_dir / "plan.json", plan_data)
        with open(job_dir / "supervisor.log", "ab") as log:
            starter = subprocess.Popen(
                [sys.executable, "-m", "unijob.local.supervisor", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=str(job_dir))
        try:
            code = starter.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            starter.kill()
            starter.wait()
            code = -1
        if code != 0 or read_pid(job_dir) is None:
            raise RuntimeError(f"the local supervisor did not start (exit {code}); see {job_dir / 'supervisor.log'}")
        return True


class Supervisor:
    """Runs one gang to a final state; see the module docstring."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        plan = read_json(job_dir / "plan.json")
        if plan is None:
            raise SystemExit(f"no plan.json in {job_dir}")
        self.body: dict[str, Any] = plan["requests"][0]["body"]
        self.cancel_requested = False
        self.ranks: list[gang.Rank] = []
        self.secret_values: list[str] = []
        self.state: dict[str, Any] = {
            "state": "QUEUED", "native_id": plan["name"], "supervisor_pid": os.getpid(),
            "supervisor_start_time": proc_start_time(os.getpid()), "restarts": 0, "ranks": [],
            "exit_code": None, "failed_rank": None, "message": "", "created_at": time.time(),
            "started_at": None, "attempt_started_at": None, "ended_at": None,
            "master_addr": self.body["master_addr"], "master_port": None, "history": [],
        }

    # ---- state ------------------------------------------------------------------------------

    def write(self, state: Optional[str] = None, **fields: Any) -> None:
        if state and state != self.state["state"] or not self.state["history"]:
            self.state["history"].append([state or self.state["state"], time.time()])
        if state:
            self.state["state"] = state
        self.state.update(fields)
        self.state["ranks"] = [r.to_dict() for r in self.ranks]
        write_json_atomic(self.job_dir / "state.json", self.state)

    def redact(self, text: str) -> str:
        for v in self.secret_values:
            text = text.replace(v, "***")
        return text

    # ---- the run ----------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: Any) -> None:
        self.cancel_requested = True

    def resolve_secrets(self) -> Optional[dict[str, str]]:
        values: dict[str, str] = {}
        for name, ref in self.body.get("secret_refs", {}).items():
            if not ref.startswith("env://"):
                continue
            var = ref[len("env://"):]
            if var not in os.environ:
                self.finish("FAILED", message=f"secret {name}: environment variable {var} is not set in the "
                            f"shell that submitted the job (secrets.{name}: {ref})")
                return None
            values[name] = os.environ[var]
        self.secret_values = sorted({v for v in values.values() if v}, key=len, reverse=True)
        return values

    def finish(self, state: str, **fields: Any) -> None:
        if self.ranks:
            gang.stop(self.ranks, self.body["grace"])
        fields.setdefault("ended_at", time.time())
        self.write(state, **fields)

    def run(self) -> str:
        self.write("QUEUED")
        secrets = self.resolve_secrets()
        if secrets is None:
            return self.state["state"]
        for d in (self.body.get("output_dir"), (self.body.get("checkpoint") or {}).get("dir")):
            if d:
                Path(d).mkdir(parents=True, exist_ok=True)
        restarts = 0
        first_start = time.time()
        while True:
            if self.cancel_requested:
                self.finish("CANCELLED", message="cancelled before launch")
                return "CANCELLED"
            port = self.body["master_port"] or gang.free_port(self.body["master_addr"])
            try:
                self.ranks = gang.launch(self.body, self.job_dir, port, restarts, secrets)
            except OSError as e:
                self.finish("FAILED", message=f"could not start the ranks ({' '.join(self.body['argv'][:2])} "
                            f"in {self.body['cwd']}): {e.strerror or e}")
                return "FAILED"
            attempt_start = time.time()
            self.write("RUNNING", master_port=port, attempt_started_at=attempt_start, restarts=restarts,
                       started_at=self.state["started_at"] or attempt_start,
                       message=f"running {len(self.ranks)} ranks" + (f" (restart {restarts})" if restarts else ""))
            outcome = self.watch(first_start, attempt_start, simulate=restarts < self.body.get("simulate_preemptions", 1))
            if outcome != "PREEMPTED":
                return outcome
            if restarts >= self.body["max_restarts"]:
                self.finish("FAILED", message=f"preempted {restarts + 1} times; spot.max_restarts "
                            f"({self.body['max_restarts']}) exhausted", restarts=restarts)
                return "FAILED"
            restarts += 1

    def watch(self, first_start: float, attempt_start: float, simulate: bool = True) -> str:
        preempt_after = self.body.get("simulate_preemption") if simulate else None
        while True:
            if self.cancel_requested:
                self.write("STOPPING", message="cancel requested: stopping the gang")
                self.finish("CANCELLED", message="cancelled")
                return "CANCELLED"
            codes = [r.poll() for r in self.ranks]
            failed = [r for r in self.ranks if r.exit_code not in (None, 0)]
            if failed:
                r = min(failed, key=lambda x: (x.exited_at or 0, x.rank))
                lines = [self.redact(x) for x in tail(r.log, 20)]
                self.finish("FAILED", exit_code=r.exit_code, failed_rank=r.rank,
                            message=f"rank {r.rank} (node {r.node_rank}, local rank {r.local_rank}) exited with "
                                    f"code {r.exit_code}; the gang was stopped. Last lines of rank-{r.rank}.log:\n"
                                    + "\n".join(lines))
                return "FAILED"
            if all(c == 0 for c in codes):
                self.finish("SUCCEEDED", exit_code=0, message=f"all {len(self.ranks)} ranks exited 0")
                return "SUCCEEDED"
            t = time.time()
            if t - first_start >= self.body["max_run"]:
                self.finish("FAILED", message=f"exceeded max_run ({self.body['max_run']} s); the gang was stopped")
                return "FAILED"
            if preempt_after is not None and t - attempt_start >= preempt_after:
                self.write("RESTARTING", message=f"simulated preemption after {preempt_after} s: SIGTERM "
                           f"to every rank, {self.body['grace']} s grace")
                gang.stop(self.ranks, self.body["grace"])
                self.write(message="preempted; relaunching from the latest checkpoint")
                return "PREEMPTED"
            time.sleep(POLL)


def _daemonize(job_dir: Path) -> None:
    """Fork; the parent records the child's pid and exits so the child is reparented to init."""
    pid = os.fork()
    if pid:
        (job_dir / ".supervisor.pid.tmp").write_text(str(pid))
        os.replace(job_dir / ".supervisor.pid.tmp", job_dir / "supervisor.pid")
        os._exit(0)


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0]).resolve()
    sup = Supervisor(job_dir)
    signal.signal(signal.SIGTERM, sup.on_signal)  # before the fork: a cancel is never lost
    signal.signal(signal.SIGINT, sup.on_signal)
    _daemonize(job_dir)
    sup.state.update(supervisor_pid=os.getpid(), supervisor_start_time=proc_start_time(os.getpid()))
    try:
        final = sup.run()
    except BaseException as e:  # a bug: never leave ranks behind
        if sup.ranks:
            gang.stop(sup.ranks, 0)
        if sup.state["state"] not in FINAL:
            sup.write("FAILED", message=f"supervisor error: {e.__class__.__name__}: {sup.redact(str(e))}",
                      ended_at=time.time())
        raise
    print(f"[unijob supervisor] {sup.state['native_id']}: {final}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
