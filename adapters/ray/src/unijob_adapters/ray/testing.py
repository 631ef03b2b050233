"""A real Ray cluster on this machine, for tests and benchmarks: a head node and worker nodes
started with ``ray start`` on fixed loopback ports, each with its own ``--temp-dir``, stopped by PID.

Usage::

    with RayTestCluster(root, python=job_python) as cluster:   # about 8 s per node
        cluster.address                                       # http://127.0.0.1:<dashboard port>
        node = cluster.add_node()                             # another raylet
        cluster.kill_node(node)                               # its raylet and workers, SIGKILL

Facts (checked on this machine with ray 2.60, see ../shared/ENGINES.md): a shared ``--temp-dir``
breaks ``working_dir`` jobs, so every node has its own; ``ray start`` daemonizes, so the processes
of a node are found by PID through ``/proc``: every process whose command line names the node's
temp dir, plus their descendants (Ray's workers rename themselves ``ray::...``). ``ray stop`` is
never used: it kills every Ray process on the machine by name. Nothing here is used by the adapter.

Each node declares ``--num-gpus 1`` and ``accelerator_type:L4`` (logical: no device is needed to
schedule), and worker nodes the custom resource ``worker`` so a test can keep a gang off the head.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unijob.testing.jobs import spec_with as _spec_with
from unijob.testing.jobs import wait_final  # noqa: F401  (re-exported for the tests)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One raylet started by the cluster: its name, temp dir and ``ray start`` output."""

    name: str
    temp_dir: Path
    head: bool
    output: str = ""
    pids: list[int] = field(default_factory=list)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def processes_under(marker: str) -> list[int]:
    """PIDs of processes whose command line contains ``marker``, and all their descendants."""
    roots = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmd:
            roots.add(int(d.name))
    kids = _children()
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo += kids.get(pid, [])
    return sorted(out)


def kill_pids(pids: list[int], *, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every PID, wait up to ``grace`` seconds, SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class RayTestCluster:
    """A head node plus ``workers`` worker nodes, all on 127.0.0.1, under ``root``.

    Args:
        root: directory for every node's temp dir (keep it short: Ray's unix socket paths live there).
        python: the interpreter whose ``ray`` starts the nodes (the cluster's Python; its ``bin`` is
            put first on the nodes' ``PATH``, so a job's ``python`` is that one).
        head_cpus / worker_cpus: logical CPUs per node (may exceed the machine's).
        workers: worker nodes started with the head.
    """

    def __init__(self, root: Optional[os.PathLike] = None, *, python: Optional[str] = None, head_cpus: int = 4,
                 worker_cpus: int = 2, workers: int = 1) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="ujray-"))
        self.python = python or shutil.which("python3") or "python3"
        self.head_cpus, self.worker_cpus, self.workers = head_cpus, worker_cpus, workers
        self.nodes: list[Node] = []
        self.gcs_port = free_port()
        self.dashboard_port = free_port()

    @property
    def address(self) -> str:
        """The Jobs API address (the dashboard)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        bindir = str(Path(self.python).parent)
        return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
                "RAY_USAGE_STATS_ENABLED": "0"}

    def _ray(self) -> str:
        return str(Path(self.python).parent / "ray")

    def _start(self, head: bool) -> Node:
        name = "head" if head else f"worker{len(self.nodes)}"
        temp = self.root / name
        temp.mkdir(parents=True, exist_ok=True)
        resources = {"accelerator_type:L4": 1}
        if not head:
            resources["worker"] = 100
        argv = [self._ray(), "start", f"--temp-dir={temp}", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.head_cpus if head else self.worker_cpus}", "--num-gpus=1",
                f"--resources={json.dumps(resources)}",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        base = 20000 + (os.getpid() % 200) * 150 + len(self.nodes) * 50
        argv += [f"--min-worker-port={base}", f"--max-worker-port={base + 49}"]
        if head:
            argv += ["--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
                     "--dashboard-host=127.0.0.1", f"--ray-client-server-port={free_port()}",
                     "--include-dashboard=true"]
        else:
            argv += [f"--address=127.0.0.1:{self.gcs_port}"]
        node = Node(name, temp, head)
        self.nodes.append(node)
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        node.output = p.stdout + p.stderr
        node.pids = processes_under(str(temp))
        if p.returncode != 0:
            raise RuntimeError(f"ray start ({name}) exited {p.returncode}:\n{node.output[-3000:]}")
        return node

    def start(self, timeout: float = 90.0) -> "RayTestCluster":
        """Start the head and the workers; wait until the Jobs API answers and every node is alive.

        Raises:
            RuntimeError: a node did not start or join within ``timeout`` seconds (``ray start``'s
                output in the message). Everything started is stopped.
        """
        try:
            self._start(head=True)
            for _ in range(self.workers):
                self._start(head=False)
            self.wait_nodes(1 + self.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, timeout: float = 90.0) -> Node:
        """Start one more worker node and wait until the cluster has a new alive node."""
        before = self.alive_ids()
        node = self._start(head=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_ids() - before:
                return node
            time.sleep(0.5)
        raise RuntimeError(f"test Ray cluster: the new node did not join within {timeout:.0f} s:\n{node.output[-1500:]}")

    def alive_ids(self) -> set[str]:
        """Node ids the cluster reports ALIVE (empty while the dashboard does not answer)."""
        from ray.util.state import list_nodes

        try:
            return {n.node_id for n in list_nodes(address=self.address) if n.state == "ALIVE"}
        except Exception:  # noqa: BLE001 - not answering yet
            return set()

    def alive_count(self) -> int:
        return len(self.alive_ids())

    def worker_nodes(self) -> list[Node]:
        """Worker nodes started by this object that still have processes."""
        return [n for n in self.nodes if not n.head and processes_under(str(n.temp_dir))]

    def wait_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_count() >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"test Ray cluster: fewer than {count} nodes alive after {timeout:.0f} s:\n"
                           + "\n".join(n.output[-1500:] for n in self.nodes))

    def kill_node(self, node: Node) -> None:
        """The node is lost: SIGKILL its raylet and every process of it (as a reclaimed VM would)."""
        kill_pids(processes_under(str(node.temp_dir)), grace=0.0, sig=signal.SIGKILL)

    def stop(self) -> None:
        """Stop every process of every node by PID: workers first, the head last (SIGTERM, then
        SIGKILL; ``gcs_server`` may need the SIGKILL)."""
        for node in reversed(self.nodes):
            for _ in range(3):  # a process may be forked while the others stop
                pids = processes_under(str(node.temp_dir))
                if not pids:
                    break
                kill_pids(pids, grace=5.0)
        self.nodes.clear()

    def __enter__(self) -> "RayTestCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def spec_with(path: os.PathLike, ray_options: dict, **updates):
    """Load the spec file at ``path`` and give it ``targets.ray`` (plus field ``updates``)."""
    return _spec_with(path, "ray", ray_options, **updates)
