"""A real Slurm cluster on this machine, for tests and benchmarks: munge, ``slurmctld`` and two
``slurmd`` nodes on loopback ports, all under one temporary directory, stopped by PID.

Usage::

    with SlurmTestCluster(root) as cluster:     # about 1 s from cold start to both nodes idle
        env = cluster.env                       # {"SLURM_CONF": ...}: point Slurm's commands at it
        ...

The cluster (facts checked on Debian 12's ``slurm-wlm`` 22.05.8; see the README of this adapter):

- nodes ``node1``, ``node2`` on 127.0.0.1 (Debian builds slurmd with multiple-slurmd support), each
  with ``cpus`` CPUs, ``memory_mb`` MiB and one fake ``gpu:l4`` GRES (``gres.conf`` with a count and
  no device file: enough for the scheduler, which is what is tested);
- partitions ``main`` (default, ``PriorityTier=10``, ``PreemptMode=OFF``) and ``spot``
  (``PriorityTier=1``, ``PreemptMode=REQUEUE``, ``GraceTime``), with
  ``PreemptType=preempt/partition_prio`` and ``SlurmctldParameters=preempt_send_user_signal`` so a
  job in ``main`` preempts (requeues) a job in ``spot`` and its batch script gets SIGTERM at once;
- no slurmdbd: ``AccountingStorageType=accounting_storage/none`` and the job completion log
  ``jobcomp/filetxt`` that ``sacct -c`` reads;
- ``DefMemPerCPU`` so that a job does not take a whole node's memory.

Every daemon is started in the foreground by this object and stopped by its PID (SIGTERM, then
SIGKILL after a timeout). Nothing here is used by the adapter itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from unijob.testing.jobs import spec_with as _spec_with
from unijob.testing.jobs import wait_final  # noqa: F401  (re-exported for the tests)

#: Binaries the cluster needs (Debian packages ``slurm-wlm`` and ``munge``).
BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "sacct")


def missing_binaries() -> list[str]:
    """Names of the binaries in :data:`BINARIES` that are not on ``PATH`` (or in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _which(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    found = shutil.which(name, path=path)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (apt-get install slurm-wlm munge)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmTestCluster:
    """munged + slurmctld + ``nodes`` slurmd, under ``root`` (a fresh short directory by default).

    Args:
        root: directory for every file (config, key, state, logs, pid files, job output); the unix
            socket path must stay under 108 bytes, so keep it short.
        nodes: slurmd daemons (``node1`` .. ``nodeN``).
        cpus: CPUs declared per node (may exceed the machine's: they are scheduler slots).
        memory_mb: memory declared per node, MiB.
        grace_time: ``GraceTime`` of the ``spot`` partition, seconds (SIGTERM to SIGKILL on preemption).
    """

    def __init__(self, root: Optional[os.PathLike] = None, *, nodes: int = 2, cpus: int = 2,
                 memory_mb: int = 2000, grace_time: int = 8) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="ujslurm-"))
        self.nodes = nodes
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.grace_time = grace_time
        self.procs: list[subprocess.Popen] = []
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge.sock"
        self.hostname = socket.gethostname()

    # ---- files ----------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point Slurm's commands at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    @property
    def node_names(self) -> list[str]:
        return [f"node{i + 1}" for i in range(self.nodes)]

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "log", "run", "munge", *(f"spool/{n}" for n in self.node_names)):
            (r / d).mkdir(parents=True, exist_ok=True)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port = free_port()
        lines = [
            "ClusterName=unijobtest",
            f"SlurmctldHost={self.hostname}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.socket},cred_expire=10",  # requeued jobs wait cred_expire s (default 120)
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'run'}/slurmctld.pid",
            f"SlurmdPidFile={r / 'run'}/slurmd-%n.pid",
            f"SlurmctldLogFile={r / 'log'}/slurmctld.log",
            f"SlurmdLogFile={r / 'log'}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=100",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=2,sched_interval=2",  # a requeued job starts soon after its begin time
            "PreemptType=preempt/partition_prio", "PreemptMode=REQUEUE",
            "SlurmctldParameters=preempt_send_user_signal",
            "KillWait=5", "MinJobAge=600", "InactiveLimit=0", "Waittime=0",
            "GresTypes=gpu",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={r / 'log'}/jobcomp.log",
            "SlurmctldDebug=info", "SlurmdDebug=info",
        ]
        for name in self.node_names:
            lines.append(f"NodeName={name} NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={free_port()} "
                         f"CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:l4:1 State=UNKNOWN")
        nodelist = ",".join(self.node_names)
        lines.append(f"PartitionName=main Nodes={nodelist} Default=YES MaxTime=INFINITE State=UP "
                     "PriorityTier=10 PreemptMode=OFF")
        lines.append(f"PartitionName=spot Nodes={nodelist} MaxTime=INFINITE State=UP PriorityTier=1 "
                     f"PreemptMode=REQUEUE GraceTime={self.grace_time}")
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "gres.conf").write_text("AutoDetect=off\n" + "".join(
            f"NodeName={n} Name=gpu Type=l4 File=/dev/null\n" for n in self.node_names))
        (r / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")

    # ---- life -----------------------------------------------------------------------------------

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.root / "log" / log, "ab")
        env = {**os.environ, **self.env}
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def start(self, timeout: float = 30.0) -> "SlurmTestCluster":
        """Write the configuration, start every daemon, wait until ``sinfo`` shows every node idle.

        Raises:
            RuntimeError: a daemon exited or the nodes did not become idle within ``timeout``
                seconds (the tails of the logs are in the message). Everything started is stopped.
        """
        self._write_config()
        r = self.root
        try:
            self._spawn([_which("munged"), "--force", "-F", f"--key-file={r / 'munge' / 'munge.key'}",
                         f"--socket={self.socket}", f"--log-file={r / 'log' / 'munged.log'}",
                         f"--pid-file={r / 'run' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'seed'}"],
                        "munged.out")
            self._wait(lambda: self.socket.exists(), timeout, "munged socket")
            self._spawn([_which("slurmctld"), "-D", "-i"], "slurmctld.out")
            for name in self.node_names:
                self._spawn([_which("slurmd"), "-D", "-N", name], f"slurmd-{name}.out")
            self._wait(self._all_idle, timeout, "nodes idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"test Slurm cluster: {', '.join(dead)} exited while waiting for {what}:\n"
                                   + self.log_tails())
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"test Slurm cluster: no {what} after {timeout:.0f} s:\n" + self.log_tails())

    def _all_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-N", "-p", "main", "-o", "%N %t"], check=False)
        states = dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
        return all(states.get(n) == "idle" for n in self.node_names)

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run a Slurm command against this cluster."""
        return subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True,
                              check=check, timeout=timeout)

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            if f.is_file() and f.suffix in (".log", ".out"):
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every job, then stop every daemon this object started, by PID: slurmd,
        slurmctld, munged (SIGTERM, then SIGKILL). ``slurmstepd`` detaches from slurmd, so job
        processes still alive after the cancel (their batch script lives under this cluster's
        spool directory) are killed by PID too."""
        if any(p.poll() is None for p in self.procs):
            try:
                ids = self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=10).stdout.split()
                if ids:
                    self.run(["scancel", *ids], check=False, timeout=10)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and self.run(
                            ["squeue", "-h", "-t", "CF,R,CG,S", "-o", "%i"], check=False, timeout=10).stdout.strip():
                        time.sleep(0.2)
            except (OSError, subprocess.SubprocessError):
                pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()
        for pid in self._job_processes():
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def _job_processes(self) -> list[int]:
        """PIDs of batch scripts running from this cluster's spool directory, and their slurmstepd."""
        spool = str(self.root / "spool")
        found: set[int] = set()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                if spool in cmd:
                    found.add(int(d.name))
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if (Path("/proc") / str(ppid) / "comm").read_text().strip() == "slurmstepd":
                        found.add(ppid)
            except (OSError, ValueError, IndexError):
                continue
        return sorted(found)

    def __enter__(self) -> "SlurmTestCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def spec_with(path: os.PathLike, slurm_options: dict, **updates):
    """Load the spec file at ``path`` and give it ``targets.slurm`` (plus field ``updates``)."""
    return _spec_with(path, "slurm", slurm_options, **updates)
