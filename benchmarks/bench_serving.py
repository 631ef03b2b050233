#!/usr/bin/env python3
"""Serving overhead: one handler served three ways, the same load against each.

1. **bare uvicorn**: a minimal ASGI callable that parses ``{"instances": [...]}``, calls the
   handler and writes ``{"predictions": [...]}``, served by uvicorn (one process). The floor.
2. **unijob.serve**: ``python -m unijob.serve`` (Starlette app, the SageMaker/Vertex/Kubernetes
   routes, payload checks, predict in a worker thread), one process.
3. **local endpoint**: ``unijob deploy`` on the local target: the router process (traffic split,
   autoscaling metrics) in front of one ``unijob.serve`` replica (min = max = 1, so the figure is
   not a scale-out's).

The same small request is posted for ``--seconds`` per level after a warm-up by clients that each
send requests back to back on a plain keep-alive socket (TCP_NODELAY; no client library inside
the timing, so the load generator costs far less than the servers): first one client (latency),
then ``--concurrency`` client threads (throughput). Printed per level and server: requests/s, p50 and
p99 latency in milliseconds, CPU milliseconds per request of the server's processes, and the
ratio of each to bare uvicorn (req/s ratio < 1 and latency or CPU ratio > 1 are unijob's
overhead), then the issue-20 goals: the local endpoint's req/s at ``--concurrency`` clients as a
ratio to bare uvicorn, and its p50 overhead in ms at 1 client. All three servers run at once and
are measured in turn, ``--rounds`` times; medians are printed. Servers, router and load generator
share this machine's cores, so the absolute figures say as much about the machine as about the
code; the ratios (and CPU per request, which depends least on other load) are the point.

    .venv/bin/python benchmarks/bench_serving.py [--seconds 5] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

HANDLER = """\
class Handler:
    def load(self, model_dir):
        self.weights = [0.5] * 64

    def predict(self, instances):
        return [sum(w * x for w, x in zip(self.weights, row)) for row in instances]
"""

BARE = """\
import json, sys
import uvicorn
sys.path.insert(0, sys.argv[2])
from handler import Handler

h = Handler()
h.load(None)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = json.dumps({"predictions": h.predict(json.loads(body)["instances"])}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

PAYLOAD = json.dumps({"instances": [[float(i % 17) for i in range(64)] for _ in range(4)]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=PAYLOAD, headers={"content-type": "application/json"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sequential(url: str, seconds: float) -> tuple[int, list[float]]:
    """One client on one keep-alive connection, a plain blocking socket (no client library in the
    timing): requests back to back for ``seconds``. Returns ``(count, sorted latencies + [elapsed])``."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    request = (f"POST {u.path or '/'} HTTP/1.1\r\nhost: {u.netloc}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(PAYLOAD)}\r\n\r\n").encode() + PAYLOAD
    latencies: list[float] = []
    with socket.create_connection((u.hostname, u.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            s.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{url} answered {head.splitlines()[0].decode()}")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                body += s.recv(65536)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return len(latencies), sorted(latencies) + [elapsed]


def concurrent(url: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    """``clients`` threads, each :func:`sequential` on its own connection (blocking sockets wait
    outside the GIL, so the load generator costs far less than the servers it loads)."""
    results: list[tuple[int, list[float]]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(sequential(url, seconds))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    latencies = sorted(x for _, lat in results for x in lat[:-1])
    return len(latencies), latencies + [time.perf_counter() - t0]


def measure(url: str, clients: int, seconds: float, pids: list[int]) -> dict[str, float]:
    def run(secs: float) -> tuple[int, list[float]]:
        return sequential(url, secs) if clients == 1 else concurrent(url, clients, secs)

    run(min(1.0, seconds))  # warm-up: connections, code paths
    cpu0, client0 = cpu_seconds(pids), time.process_time()
    n, lat = run(seconds)
    cpu, client = cpu_seconds(pids) - cpu0, time.process_time() - client0
    elapsed, lat = lat[-1], lat[:-1]
    return {"rps": n / elapsed, "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "cpu": cpu / n * 1000,
            "client": client / elapsed * 100}


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level, server and round")
    ap.add_argument("--concurrency", type=int, default=8, help="clients in the throughput level")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (servers measured in turn); medians are printed")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    (work / "handler.py").write_text(HANDLER)
    (work / "bare.py").write_text(BARE)
    os.environ["UNIJOB_HOME"] = str(work / "home")
    # Each server in its own session, as deploy starts the router and each replica: with
    # kernel.sched_autogroup_enabled=1 Linux shares CPU between sessions first, so a server left
    # in this session would share one slice with the load generator.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    servers: dict[str, tuple[str, list[int]]] = {}
    procs: list[subprocess.Popen] = []
    adapter = handle = None
    try:
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(work / "bare.py"), str(port), str(work)], **quiet))
        servers["bare uvicorn"] = (f"http://127.0.0.1:{port}/", [procs[-1].pid])
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "unijob.serve", "--handler", "handler:Handler", "--host",
                                       "127.0.0.1", "--port", str(port)], cwd=work, **quiet))
        servers["unijob.serve"] = (f"http://127.0.0.1:{port}/invocations", [procs[-1].pid])

        from unijob.loading import load_spec
        from unijob.local.adapter import LocalAdapter

        (work / "endpoint.yaml").write_text(textwrap.dedent("""\
            name: bench
            endpoint:
              handler: handler:Handler
              model: .                # the handler reads no artifact; an endpoint names one anyway
              min_replicas: 1
              max_replicas: 1
        """))
        adapter = LocalAdapter()
        handle = adapter.deploy(adapter.plan_endpoint(load_spec(str(work / "endpoint.yaml")).spec))
        state = json.loads((Path(handle.extra["endpoint_dir"]) / "state.json").read_text())
        pids = [state["router_pid"]] + [r["pid"] for v in state["variants"].values() for r in v["replicas"]]
        servers["local endpoint"] = (handle.extra["url"] + "/invocations", pids)
        for url, _ in servers.values():
            wait_ready(url)

        levels = (1, a.concurrency)
        load0 = os.getloadavg()[0]
        runs: dict[str, dict[int, list[dict[str, float]]]] = {n: {c: [] for c in levels} for n in servers}
        for _ in range(a.rounds):
            for c in levels:
                for name, (url, pids) in servers.items():
                    runs[name][c].append(measure(url, c, a.seconds, pids))
    finally:
        if adapter is not None and handle is not None:
            adapter.undeploy(handle)
        for p in procs:
            stop(p)

    res = {n: {c: {k: median([r[k] for r in rs]) for k in rs[0]} for c, rs in by_level.items()}
           for n, by_level in runs.items()}
    base = res["bare uvicorn"]
    print(f"serving overhead: {a.seconds:g} s per level and server, median of {a.rounds} round(s); payload "
          f"{len(PAYLOAD)} bytes (4 instances x 64 floats); {os.cpu_count()} cores shared by servers, load "
          f"generator and anything else running (load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print("cpu ms/req: CPU time of the server's processes (router + replica for the local endpoint) per "
          "request; it depends least on what else runs on the machine. client %: the load generator's own "
          "CPU (100 = one core), to show it does not starve the servers")
    for c in levels:
        print(f"\n{c} client(s):")
        print(f"  {'server':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} {'client %':>8}   "
              f"{'req/s ratio':>11} {'p50 ratio':>9} {'p99 ratio':>9} {'cpu ratio':>9}")
        for name, r in res.items():
            m, b = r[c], base[c]
            print(f"  {name:<16} {m['rps']:8.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu']:10.3f} {m['client']:8.0f}   "
                  f"{m['rps'] / b['rps']:11.2f} {m['p50'] / b['p50']:9.2f} {m['p99'] / b['p99']:9.2f} "
                  f"{m['cpu'] / b['cpu']:9.2f}")
    hi, ep, bare, serve = a.concurrency, runs["local endpoint"], runs["bare uvicorn"], runs["unijob.serve"]

    def per_round(f: Any) -> str:  # median over the rounds of f(round), and each round's value
        values = [f(i) for i in range(a.rounds)]
        return f"{median(values):+.2f} (rounds: {', '.join(f'{v:+.2f}' for v in values)})"

    print("\ngoals (issue 20), each the median of the rounds' own figures (servers measured back to back):")
    print(f"  local endpoint req/s at {hi} clients vs bare uvicorn: "
          f"{per_round(lambda i: ep[hi][i]['rps'] / bare[hi][i]['rps'])}x  (goal >= 0.7x)")
    print(f"  local endpoint p50 overhead at 1 client vs bare uvicorn: "
          f"{per_round(lambda i: ep[1][i]['p50'] - bare[1][i]['p50'])} ms  (goal <= 0.3 ms)")
    print(f"  the router hop alone (local endpoint vs unijob.serve) at 1 client: "
          f"{per_round(lambda i: ep[1][i]['p50'] - serve[1][i]['p50'])} ms p50, "
          f"{per_round(lambda i: ep[1][i]['cpu'] - serve[1][i]['cpu'])} cpu ms/req")
    return 0


if __name__ == "__main__":
    sys.exit(main())
