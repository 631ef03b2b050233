"""Starting and stopping the ranks of a gang (standard library only).

Every rank is the leader of its own session and process group (``start_new_session``), so
``killpg`` reaches the rank *and* whatever it spawned (data-loader workers, shells). Stopping a
gang is SIGTERM to every group, a grace period, then SIGKILL to every group still holding a
process, including groups whose leader already exited: no orphans are left.

Supervisor death: on Linux each rank gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` so the kernel kills
it when the supervisor dies, even by SIGKILL (processes the rank spawned are reached by the
``cancel``/``status`` clean-up, which kills the recorded process groups after checking their
start times). Elsewhere only that clean-up applies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from unijob.local.jobdir import proc_start_time

PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec(parent: int) -> Callable[[], None]:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os._exit(137)

    return preexec


def free_port(addr: str) -> int:
    """A TCP port on ``addr`` that nothing listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr if addr not in ("localhost",) else "127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Rank:
    """One rank process: its place in the gang and, once started, its process."""

    rank: int
    node_rank: int
    local_rank: int
    proc: Optional[subprocess.Popen] = None
    start_time: Optional[int] = None
    exit_code: Optional[int] = None
    exited_at: Optional[float] = None
    log: Optional[Path] = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def poll(self) -> Optional[int]:
        if self.proc is not None and self.exit_code is None:
            code = self.proc.poll()
            if code is not None:
                self.exit_code, self.exited_at = code, time.time()
        return self.exit_code

    def killpg(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def to_dict(self) -> dict:
        return {"rank": self.rank, "node_rank": self.node_rank, "local_rank": self.local_rank,
                "pid": self.pid, "pgid": self.pid, "start_time": self.start_time, "exit_code": self.exit_code}


def rank_env(body: dict, rank: Rank, port: int, restarts: int) -> dict[str, str]:
    """The torchrun-compatible variables of one rank (names as torchrun sets them, PyTorch 2.x
    ``torch.distributed.run`` docs, "Environment Variables")."""
    nodes, ppn, world = body["nodes"], body["processes_per_node"], body["world_size"]
    return {
        "RANK": str(rank.rank), "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank.local_rank), "LOCAL_WORLD_SIZE": str(ppn),
        "NODE_RANK": str(rank.node_rank), "GROUP_RANK": str(rank.node_rank), "GROUP_WORLD_SIZE": str(nodes),
        "ROLE_RANK": str(rank.rank), "ROLE_WORLD_SIZE": str(world), "ROLE_NAME": "default",
        "MASTER_ADDR": body["master_addr"], "MASTER_PORT": str(port),
        "TORCHELASTIC_RESTART_COUNT": str(restarts), "TORCHELASTIC_MAX_RESTARTS": str(body["max_restarts"]),
        "TORCHELASTIC_RUN_ID": body["env"].get("UNIJOB_JOB_ID", "unijob"),
        "UNIJOB_RESTART_COUNT": str(restarts),
    }


def launch(body: dict, job_dir: Path, port: int, restarts: int, secrets: dict[str, str]) -> list[Rank]:
    """Start every rank (``nodes`` x ``processes_per_node``), each in its own session.

    Environment of each rank: the supervisor's own (inherited from the submitting shell), then the
    plan's ``env``, then the resolved secrets, then :func:`rank_env`.
    """
    ranks = [Rank(rank=n * body["processes_per_node"] + lr, node_rank=n, local_rank=lr)
             for n in range(body["nodes"]) for lr in range(body["processes_per_node"])]
    base = {**os.environ, **body["env"], **secrets}
    preexec = _pdeathsig_preexec(os.getpid()) if sys.platform.startswith("linux") else None
    try:
        for r in ranks:
            r.log = job_dir / f"rank-{r.rank}.log"
            with open(r.log, "ab") as out:
                if restarts:
                    out.write(f"[unijob] restart {restarts}: relaunching rank {r.rank}\n".encode())
                    out.flush()
                r.proc = subprocess.Popen(
                    body["argv"], cwd=body["cwd"], env={**base, **rank_env(body, r, port, restarts)},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=preexec, close_fds=True)
            r.start_time = proc_start_time(r.proc.pid)
    except BaseException:
        stop(ranks, 0)
        raise
    return ranks


def stop(ranks: list[Rank], grace: float, *, already_signalled: bool = False) -> None:
    """SIGTERM every rank's process group, wait up to ``grace`` seconds for the rank processes to
    exit, then SIGKILL every group (stragglers and anything a rank left behind) and reap."""
    if not already_signalled:
        for r in ranks:
            if r.poll() is None:
                r.killpg(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(r.poll() is None for r in ranks):
        time.sleep(0.02)
    for r in ranks:
        r.killpg(signal.SIGKILL)
    for r in ranks:
        if r.proc is not None and r.exit_code is None:
            r.proc.wait()
            r.poll()
