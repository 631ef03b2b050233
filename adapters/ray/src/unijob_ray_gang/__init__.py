"""unijob's gang launcher on Ray: the entrypoint of every unijob Ray job (``python -m unijob_ray_gang``).

It reaches the cluster as a ``py_modules`` directory of the job's ``runtime_env`` (docs.ray.io,
"Environment Dependencies", ``py_modules``: a local directory is uploaded and importable by its
name), with unijob's runtime wheel beside it, so the cluster needs nothing but Ray. Each node agent
installs the wheel once per node (:func:`install_runtime`) and puts it first on its ranks'
``PYTHONPATH``. (Handing Ray the ``.whl`` itself in ``py_modules`` failed on a node that joined
after a node loss, when an earlier job had uploaded the same wheel: Ray reported the wheel's
directory missing on that node, three retries in a row.) Standard library and ``ray`` only.

What it does, as the Ray job's driver:

1. reserves the gang as one placement group, one bundle per node (``{"CPU": c, "GPU": g,
   "accelerator_type:<TYPE>": 0.001, ...}``), ``STRICT_SPREAD`` across nodes when the gang has more
   than one node, ``PACK`` otherwise (docs.ray.io, "Placement Groups": STRICT_SPREAD places each
   bundle on a different node), and waits for it up to ``--max-wait`` seconds;
2. starts one node agent (a Ray actor) in each bundle; rank 0's node gives ``MASTER_ADDR`` (its
   node IP) and ``MASTER_PORT`` (a free port there, unless ``--master-port``);
3. each agent starts its ranks as processes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
   ``LOCAL_WORLD_SIZE``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, ``UNIJOB_RESTART_COUNT``,
   ``UNIJOB_RAY_NODE_ID``); their output reaches the job log as ``[rank N] <line>``;
4. one rank exiting non-zero stops the whole gang (SIGTERM, then SIGKILL after a grace) and fails
   the job, printing that rank's last lines;
5. a node lost mid-run (its agent died with its raylet) stops the rest of the gang, frees the
   placement group and relaunches the gang on a new one, up to ``--max-restarts`` times; the
   script resumes from its latest checkpoint (``unijob.runtime.Checkpointer``);
6. SIGTERM (``stop_job``) is forwarded to every rank as the preemption notice, then the gang stops.

Lines of its own start with ``[unijob]``; :mod:`unijob_adapters.ray.adapter` reads restarts and the
failing rank from them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Optional

#: Seconds between SIGTERM and SIGKILL when the gang is stopped.
GRACE_SECONDS = 5.0
#: Retries of a gang whose agents could not start (e.g. a new node failing to set up the job's
#: runtime env, seen once in ten runs on the test cluster right after a node joined); not restarts.
SETUP_RETRIES = 3
#: Lines kept per rank for the failure summary.
TAIL_LINES = 20
#: ``prctl(PR_SET_PDEATHSIG)``: a rank dies with the agent that started it (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def say(msg: str) -> None:
    print(f"[unijob] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def install_runtime(wheel_name: str) -> str:
    """Install unijob's runtime wheel (shipped beside this module) on this node, once per wheel:
    ``pip install --no-deps --no-index --target <tmp>/unijob-ray-runtime/<wheel stem>`` (an atomic
    rename publishes it). Returns the directory to put first on the ranks' ``PYTHONPATH``."""
    import tempfile

    wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), wheel_name)
    target = os.path.join(tempfile.gettempdir(), "unijob-ray-runtime", wheel_name[:-len(".whl")])
    if os.path.isdir(target):
        return target
    tmp = f"{target}.{os.getpid()}.tmp"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-deps", "--no-index", "--no-compile", "--target", tmp, wheel],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"installing the runtime wheel {wheel_name} failed: {out.stderr.strip()[-500:]}")
    try:
        os.rename(tmp, target)
    except OSError:  # installed meanwhile by another agent of this node
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class NodeAgent:
    """One per node bundle: starts this node's ranks and relays their output and exit codes.

    Ranks are spawned by one long-lived thread of the agent, so ``PR_SET_PDEATHSIG`` (which fires
    when the *thread* that forked the child ends) kills them exactly when the agent dies.
    """

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen] = {}
        self._lines: collections.deque = collections.deque()
        self._requests: queue.Queue = queue.Queue()
        self._spawner = threading.Thread(target=self._spawn_loop, daemon=True)
        self._spawner.start()

    def where(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "free_port": _free_port(), "host": socket.gethostname()}

    def _spawn_loop(self) -> None:
        while True:
            argv, env, rank, done = self._requests.get()
            try:
                p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
                self._procs[rank] = p
                threading.Thread(target=self._read, args=(rank, p), daemon=True).start()
            except OSError as e:
                self._lines.append((rank, f"unijob: cannot start rank {rank}: {e}"))
                self._procs[rank] = _Failed()
            done.set()

    def _read(self, rank: int, p: subprocess.Popen) -> None:
        for raw in p.stdout:
            self._lines.append((rank, raw.decode("utf-8", "replace").rstrip("\n")))

    def start(self, ranks: list[dict[str, Any]], argv: list[str], wheel: Optional[str] = None) -> None:
        base = dict(os.environ)
        if wheel:
            site = install_runtime(wheel)
            base["PYTHONPATH"] = site + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
        for r in ranks:
            env = {**base, **{k: str(v) for k, v in r.items()}}
            done = threading.Event()
            self._requests.put((argv, env, int(r["RANK"]), done))
            done.wait()

    def poll(self) -> tuple[list[tuple[int, str]], dict[int, Optional[int]]]:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        codes = {rank: p.poll() for rank, p in self._procs.items()}
        if all(c is not None for c in codes.values()):
            time.sleep(0.05)  # let the readers drain the last lines
            while self._lines:
                lines.append(self._lines.popleft())
        return lines, codes

    def signal_all(self, sig: int) -> None:
        for p in self._procs.values():
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except OSError:
                    pass

    def stop(self, grace: float = GRACE_SECONDS) -> dict[int, Optional[int]]:
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in self._procs.values()):
            time.sleep(0.1)
        self.signal_all(signal.SIGKILL)
        return {rank: p.poll() for rank, p in self._procs.items()}


class _Failed:
    def poll(self) -> int:
        return 127

    def send_signal(self, sig: int) -> None:
        pass


class Gang:
    """One attempt: a placement group, its agents and their ranks."""

    def __init__(self, args: argparse.Namespace, attempt: int) -> None:
        self.args = args
        self.attempt = attempt
        self.pg: Any = None
        self.agents: list[Any] = []
        self.tails: dict[int, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=TAIL_LINES))

    def place(self) -> bool:
        """Reserve the placement group; False when it was not placed within ``--max-wait``."""
        from ray.util.placement_group import placement_group

        a = self.args
        bundle = json.loads(a.bundle)
        self.pg = placement_group([dict(bundle) for _ in range(a.nodes)], strategy=a.strategy,
                                  name=f"unijob-{os.environ.get('UNIJOB_JOB_ID', 'gang')}-{self.attempt}")
        say(f"waiting for the gang: placement group {a.strategy} of {a.nodes} x {json.dumps(bundle, sort_keys=True)}"
            + (f" (up to {a.max_wait:.0f} s)" if a.max_wait else ""))
        t0 = time.monotonic()
        while True:
            left = a.max_wait - (time.monotonic() - t0) if a.max_wait else 60.0
            if left <= 0:
                return False
            if self.pg.wait(timeout_seconds=min(left, 60.0)):
                return True
            say(f"still waiting for the placement group after {time.monotonic() - t0:.0f} s")

    def launch(self, command: list[str]) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        a = self.args
        bundle = json.loads(a.bundle)
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}
        agent_cls = ray.remote(NodeAgent)
        self.agents = [agent_cls.options(
            num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), resources=custom or None,
            max_restarts=0, max_concurrency=4,
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=self.pg,
                                                                 placement_group_bundle_index=i)).remote()
            for i in range(a.nodes)]
        where = ray.get([ag.where.remote() for ag in self.agents], timeout=120)
        master_addr = where[0]["ip"]
        master_port = a.master_port or where[0]["free_port"]
        world = a.nodes * a.procs_per_node
        for node, w in enumerate(where):
            first = node * a.procs_per_node
            say(f"node {node}: rank(s) {first}-{first + a.procs_per_node - 1} on raylet {w['node_id']} ({w['ip']})")
        say(f"gang running: world size {world}, master {master_addr}:{master_port}, attempt {self.attempt}")
        argv = [sys.executable, "-u", *command] if command and command[0].endswith(".py") else list(command)
        calls = []
        for node, ag in enumerate(self.agents):
            ranks = [{"RANK": node * a.procs_per_node + lr, "WORLD_SIZE": world, "LOCAL_RANK": lr,
                      "LOCAL_WORLD_SIZE": a.procs_per_node, "NODE_RANK": node, "UNIJOB_NODES": a.nodes,
                      "MASTER_ADDR": master_addr, "MASTER_PORT": master_port,
                      "UNIJOB_RESTART_COUNT": self.attempt, "UNIJOB_RAY_NODE_ID": where[node]["node_id"],
                      "UNIJOB_TARGET": "ray", "PYTHONUNBUFFERED": "1"}
                     for lr in range(a.procs_per_node)]
            calls.append(ag.start.remote(ranks, argv, a.runtime_wheel))
        ray.get(calls, timeout=300)

    def watch(self, deadline: Optional[float]) -> tuple[str, Any]:
        """Relay output until the gang ends: ``("ok", None)``, ``("failed", (rank, code))``,
        ``("lost", node)`` or ``("timeout", None)`` (``--max-run`` passed)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        world = self.args.nodes * self.args.procs_per_node
        while True:
            if deadline and time.monotonic() > deadline:
                return "timeout", None
            codes: dict[int, Optional[int]] = {}
            for node, ag in enumerate(self.agents):
                try:
                    lines, node_codes = ray.get(ag.poll.remote(), timeout=60)
                except (RayActorError, GetTimeoutError) as e:
                    return "lost", (node, e.__class__.__name__)
                for rank, line in lines:
                    self.tails[rank].append(line)
                    print(f"[rank {rank}] {line}", flush=True)
                codes.update(node_codes)
            bad = sorted((r, c) for r, c in codes.items() if c not in (None, 0))
            if bad:
                return "failed", bad[0]
            if len(codes) == world and all(c == 0 for c in codes.values()):
                return "ok", None
            time.sleep(0.2)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        calls = []
        for ag in self.agents:
            try:
                calls.append(ag.stop.remote(grace))
            except Exception:
                pass
        for c in calls:
            try:
                ray.get(c, timeout=grace + 10)
            except Exception:
                pass
        for ag in self.agents:
            try:
                ray.kill(ag)
            except Exception:
                pass
        if self.pg is not None:
            try:
                remove_placement_group(self.pg)
            except Exception:
                pass

    def notice(self) -> None:
        """Forward SIGTERM (the preemption notice) to every rank, without waiting."""
        for ag in self.agents:
            try:
                ag.signal_all.remote(signal.SIGTERM)
            except Exception:
                pass


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m unijob_ray_gang", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--procs-per-node", type=int, default=1)
    p.add_argument("--bundle", required=True, help="one node's bundle, JSON")
    p.add_argument("--strategy", choices=["STRICT_SPREAD", "SPREAD", "PACK", "STRICT_PACK"], required=True)
    p.add_argument("--max-wait", type=float, default=None, help="seconds to wait for placement")
    p.add_argument("--max-restarts", type=int, default=0, help="relaunches after a lost node")
    p.add_argument("--max-run", type=float, default=None, help="seconds the job may run")
    p.add_argument("--master-port", type=int, default=None)
    p.add_argument("--runtime-wheel", default=None, help="unijob's runtime wheel, beside this module")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("no command after --")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    import ray

    ray.init(log_to_driver=False, logging_level="WARNING")
    deadline = time.monotonic() + args.max_run if args.max_run else None
    state: dict[str, Any] = {"gang": None, "stopping": False}

    def on_term(signum: int, frame: Any) -> None:
        state["stopping"] = True
        say("SIGTERM: forwarding the stop to every rank")
        if state["gang"] is not None:
            state["gang"].notice()
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    attempt = 0
    setup_failures = 0
    try:
        while True:
            gang = Gang(args, attempt)
            state["gang"] = gang
            if not gang.place():
                say(f"FAILED: the placement group was not placed within max_wait ({args.max_wait:.0f} s)")
                gang.stop(0)
                return 1
            try:
                gang.launch(args.command)
            except Exception as e:  # noqa: BLE001 - RuntimeEnvSetupError, an agent lost while starting
                setup_failures += 1
                first = (str(e).strip().splitlines() or [e.__class__.__name__])[-1][:300]
                gang.stop(0)
                if setup_failures > SETUP_RETRIES:
                    say(f"FAILED: the gang could not be started ({e.__class__.__name__}: {first})")
                    return 1
                say(f"the gang could not be started ({e.__class__.__name__}: {first}); retrying on a new placement "
                    f"group ({setup_failures}/{SETUP_RETRIES})")
                time.sleep(2.0)
                continue
            outcome, detail = gang.watch(deadline)
            if outcome == "ok":
                gang.stop(0)
                say("SUCCEEDED: every rank exited 0")
                return 0
            if outcome == "failed":
                rank, code = detail
                say(f"rank {rank} exited with code {code}; stopping the gang")
                gang.stop()
                say(f"FAILED: rank {rank} exited with code {code}; its last lines:")
                for line in gang.tails[rank]:
                    print(f"[unijob]   {line}", flush=True)
                return 1
            if outcome == "timeout":
                gang.stop()
                say(f"FAILED: max_run ({args.max_run:.0f} s) passed; the gang was stopped")
                return 1
            node, why = detail
            say(f"node {node} of the gang was lost ({why}); stopping the rest of the gang")
            gang.stop()
            if attempt >= args.max_restarts:
                say(f"FAILED: node lost and no restarts left (max_restarts {args.max_restarts})")
                return 1
            attempt += 1
            say(f"restart {attempt}/{args.max_restarts}: relaunching the gang from the latest checkpoint on a new "
                "placement group")
    finally:
        if state["gang"] is not None and state["stopping"]:
            state["gang"].stop(2.0)
