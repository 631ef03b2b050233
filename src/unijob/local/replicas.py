"""A local endpoint's replica processes: their records, their sockets, starting and signalling them.

Each replica is ``python -m unijob.serve`` on a listening socket the router bound and hands over
(``--fd``), so nothing can take its address in between. On Linux that socket is a Unix socket in
the abstract namespace (``\\0unijob-<router pid>-<n>``: no file to clean up, gone with its
processes); elsewhere a TCP port on 127.0.0.1. The Unix socket halves the kernel's share of the
router's hop: on this project's 2-core Linux VMs a TCP loopback send and receive cost about 4x a
Unix socket's (``benchmarks/bench_serving.py``; see :mod:`unijob.local.router`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from unijob.local.upstream import Upstream

_names = itertools.count()


@dataclass
class Replica:
    variant: str
    index: int
    proc: subprocess.Popen
    address: str  # "127.0.0.1:PORT", or "unix:@NAME" for an abstract Unix socket
    log: Path
    started_at: float
    start_time: Optional[int] = None
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    upstream: Optional[Upstream] = None  # keep-alive connections to it

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.proc.pid, "start_time": self.start_time, "address": self.address,
                "ready": self.ready, "draining": self.draining, "in_flight": self.in_flight,
                "started_at": self.started_at, "log": str(self.log)}


@dataclass
class Variant:
    name: str
    weight: int
    handler: str
    model: Optional[str]
    replicas: list[Replica] = field(default_factory=list)
    current: int = 0  # smooth weighted round-robin state
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    samples: collections.deque = field(default_factory=collections.deque)    # (t, in_flight)
    completed: collections.deque = field(default_factory=collections.deque)  # t of completions
    recommendations: collections.deque = field(default_factory=collections.deque)  # (t, desired)
    last_scale_out: float = 0.0
    last_scale_in: float = 0.0
    next_index: int = 0
    crash_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=5))
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def serving(self) -> list[Replica]:
        return [r for r in self.replicas if r.ready and not r.draining]

    @property
    def live(self) -> list[Replica]:
        """Replicas counted as capacity: starting or ready, not draining."""
        return [r for r in self.replicas if not r.draining]


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = any free port). Created with proto
    ``IPPROTO_TCP``: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    it a response's headers and body wait on a delayed ACK (~40 ms each).

    Raises:
        OSError: the address is taken or not local.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def replica_socket(backlog: int = 1024) -> tuple[socket.socket, str, Upstream]:
    """A listening socket for one replica, its address for humans, and a client pool to it: an
    abstract Unix socket on Linux, else (or if that fails) a TCP port on 127.0.0.1."""
    if sys.platform.startswith("linux"):
        name = f"\0unijob-{os.getpid()}-{next(_names)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
            sock.listen(backlog)
            return sock, f"unix:@{name[1:]}", Upstream("localhost", unix=name)
        except OSError:
            sock.close()
    sock = listen("127.0.0.1", 0, backlog)
    port = sock.getsockname()[1]
    return sock, f"127.0.0.1:{port}", Upstream("127.0.0.1", port)


def spawn(python: str, cwd: str, env: dict[str, str], sock: socket.socket, log: Path) -> subprocess.Popen:
    """``python -m unijob.serve --fd N`` on ``sock``, output appended to ``log``, in its own
    session (signalled as a group), killed with the calling thread on Linux (``PR_SET_PDEATHSIG``:
    call it from the event-loop thread, which lives as long as the router)."""
    argv = [python, "-m", "unijob.serve", "--fd", str(sock.fileno()), "--host", "127.0.0.1"]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                pass_fds=(sock.fileno(),), start_new_session=True, preexec_fn=_pdeathsig())


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group of ``proc`` (gone already: nothing)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pdeathsig() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    from unijob.local.gang import _pdeathsig_preexec

    return _pdeathsig_preexec(os.getpid())


__all__ = ["Replica", "Variant", "listen", "replica_socket", "signal_group", "spawn"]
