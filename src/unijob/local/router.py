"""A local endpoint: replica processes of ``unijob.serve`` behind one router that splits traffic.

``python -m unijob.local.router ENDPOINT_DIR`` runs detached (started by
:meth:`unijob.local.adapter.LocalAdapter.deploy`) and owns everything of one endpoint:

* **Replicas**: ``python -m unijob.serve`` processes, one per replica, each handed a listening
  socket the router bound (a Unix socket on Linux, else 127.0.0.1; see
  :mod:`unijob.local.replicas`). They die with the
  router (``PR_SET_PDEATHSIG`` on Linux) and are stopped SIGTERM-then-SIGKILL on undeploy. A replica
  is routed to once its ``/ping`` answers 200; one that dies is replaced while its variant is below
  ``min_replicas``.
* **Traffic split**: the variant of each request is chosen by smooth weighted round-robin (the
  algorithm of nginx's ``upstream`` weights): over any 100 consecutive requests each variant gets
  exactly its weight, in an interleaved order. Within a variant the replica with the fewest
  requests in flight answers. A request may pin a variant with the ``X-Unijob-Target-Variant``
  header (SageMaker's ``TargetVariant``); every answer carries ``X-Unijob-Variant`` (SageMaker's
  ``X-Amzn-Invoked-Production-Variant``).
* **Autoscaling** per variant, every 0.5 s, in the manner of the Kubernetes HPA:
  ``desired = ceil(metric_total / target)`` clamped to ``[min_replicas, max_replicas]``, where
  ``metric_total`` is the variant's requests in flight (``concurrency``) or completed requests per
  minute (``invocations_per_replica_per_minute``), averaged over ``autoscaling_window`` seconds.
  Scale-out happens at most once per ``scale_out_cooldown``; scale-in goes to the highest
  recommendation of the last ``scale_in_cooldown`` seconds (the HPA's scale-down stabilization
  window), and a removed replica first drains its requests in flight. With ``min_replicas: 0`` the
  first request starts a replica and waits for it (a cold start).
* **State** in ``ENDPOINT_DIR/state.json`` (atomic writes): the URL, the traffic split, each
  replica's pid, port and readiness, request counts, and the latest scaling events. Admin routes on
  the router: ``GET /_unijob/status`` (that state) and ``PUT /_unijob/traffic`` (a new split).

Request routes are passed through unchanged, so the router answers the same ``/invocations``,
``/predict``, ``/ping`` as one replica does (see :mod:`unijob.serve.app`). The HTTP/1.1 server side
is :mod:`unijob.local.front` and the client side :mod:`unijob.local.upstream`, both callbacks over
httptools: a forwarded request creates no task or coroutine once a replica is ready.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from unijob.local import jobdir as jd
from unijob.local.front import Connection, FrontServer, Request
from unijob.local.replicas import Replica, Variant, listen, replica_socket, signal_group, spawn

#: Headers not passed on (RFC 9110 section 7.6.1 hop-by-hop fields, and those the router sets
#: itself; ``expect``: the router has read the whole body before it forwards the request).
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers",
              b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect"}
PIN_HEADER = b"x-unijob-target-variant"
VARIANT_HEADER = b"x-unijob-variant"
TICK = 0.5
STOP_GRACE = 10.0
MAX_EVENTS = 50


class Router:
    """The endpoint's router and replica manager (see the module docstring). ``body`` is the
    ``local:deploy`` request of the plan (:mod:`unijob.local.serving`)."""

    def __init__(self, endpoint_dir: Path, body: dict[str, Any]) -> None:
        self.dir = endpoint_dir
        self.body = body
        self.name: str = body["name"]
        self.variants = {v["name"]: Variant(v["name"], int(v["weight"]), v["handler"], v.get("model"))
                         for v in body["variants"]}
        self.min = int(body["min_replicas"])
        self.max = int(body["max_replicas"])
        self.metric: str = body["autoscaling"]["metric"]
        self.target = float(body["autoscaling"]["target"])
        self.window = float(body["autoscaling_window"])
        self.out_cooldown = float(body["scale_out_cooldown"])
        self.in_cooldown = float(body["scale_in_cooldown"])
        self.request_timeout = float(body["request_timeout"])
        self.ready_timeout = float(body["deploy_timeout"])
        self.events: collections.deque = collections.deque(maxlen=MAX_EVENTS)
        self.state = "CREATING"
        self.message = ""
        self.url = ""
        self.created = time.time()
        self._last_write = 0.0
        self._seq = self._written = 0
        self._write_lock = threading.Lock()
        self.front = FrontServer(self.handle)
        self._stop = asyncio.Event()
        self.stopping = False
        self._tasks: set[asyncio.Task] = set()

    # ---- state ------------------------------------------------------------------------------

    def event(self, message: str) -> None:
        self.events.append([round(time.time(), 3), message])
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)
        self.write_state()

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "message": self.message, "url": self.url,
            "router_pid": os.getpid(), "router_start_time": jd.proc_start_time(os.getpid()),
            "created": self.created,
            "traffic": {v.name: v.weight for v in self.variants.values()},
            "replicas": {v.name: len(v.serving) for v in self.variants.values()},
            "variants": {v.name: {"weight": v.weight, "in_flight": v.in_flight, "requests": v.requests,
                                  "errors": v.errors, "replicas": [r.to_dict() for r in v.replicas]}
                         for v in self.variants.values()},
            "events": list(self.events),
        }

    def write_state(self) -> None:
        """Write ``state.json`` now (events: rare, and their order matters)."""
        self._last_write = time.time()
        self._write(self._next_seq(), self.snapshot())

    async def write_state_soon(self, throttle: float) -> None:
        """The periodic refresh of ``state.json``, at most once per ``throttle`` seconds, written
        (with its fsync) on a worker thread: on a busy machine the fsync held the event loop,
        and every request in flight, for ~10 ms once a second."""
        now = time.time()
        if now - self._last_write < throttle:
            return
        self._last_write = now
        seq, snapshot = self._next_seq(), self.snapshot()
        await asyncio.get_running_loop().run_in_executor(None, self._write, seq, snapshot)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _write(self, seq: int, snapshot: dict[str, Any]) -> None:
        with self._write_lock:  # an older snapshot never replaces a newer one
            if seq > self._written:
                jd.write_json_atomic(self.dir / "state.json", snapshot)
                self._written = seq

    # ---- replicas ---------------------------------------------------------------------------

    def start_replica(self, v: Variant, reason: str) -> Replica:
        """Bind a socket, start ``python -m unijob.serve`` on it, and watch it until ready."""
        sock, address, upstream = replica_socket()
        index = v.next_index
        v.next_index += 1
        log = self.dir / f"replica-{v.name}-{index}.log"
        env = {**os.environ, **self.body.get("env", {}), "UNIJOB_HANDLER": v.handler, "UNIJOB_ENDPOINT": self.name,
               "UNIJOB_VARIANT": v.name, "UNIJOB_TARGET": "local", "PYTHONUNBUFFERED": "1"}
        for k in ("AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT", "PORT", "UNIJOB_MODEL_URI"):
            env.pop(k, None)
        if v.model:
            env["UNIJOB_MODEL_DIR"] = v.model
        else:
            env.pop("UNIJOB_MODEL_DIR", None)
        try:
            proc = spawn(self.body["python"], self.body["cwd"], env, sock, log)
        finally:
            sock.close()
        r = Replica(v.name, index, proc, address, log, time.time(), jd.proc_start_time(proc.pid), upstream=upstream)
        v.replicas.append(r)
        self.event(f"{v.name}: replica {index} starting (pid {proc.pid}, {address}): {reason}")
        self._spawn(self._watch_ready(v, r))
        return r

    async def _watch_ready(self, v: Variant, r: Replica) -> None:
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline and r.proc.poll() is None and not r.draining:
            try:
                status, _, _ = await r.upstream.request("GET", b"/ping", [], b"", 2.0)
                if status == 200:
                    r.ready = True
                    v.ready_event.set()
                    self.event(f"{v.name}: replica {r.index} ready in {time.time() - r.started_at:.2f} s")
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.05)
        if r.proc.poll() is None and not r.draining:
            self.event(f"{v.name}: replica {r.index} not ready after {self.ready_timeout:.0f} s; stopping it")
            await self.stop_replica(v, r)

    async def stop_replica(self, v: Variant, r: Replica, *, drain: float = 0.0) -> None:
        """Stop routing to ``r``, wait up to ``drain`` s for its requests in flight, then SIGTERM,
        and SIGKILL after :data:`STOP_GRACE` seconds."""
        r.draining = True
        t0 = time.time()
        while r.in_flight and time.time() - t0 < drain:
            await asyncio.sleep(0.05)
        signal_group(r.proc, signal.SIGTERM)
        t0 = time.time()
        while r.proc.poll() is None and time.time() - t0 < STOP_GRACE:
            await asyncio.sleep(0.05)
        if r.proc.poll() is None:
            signal_group(r.proc, signal.SIGKILL)
            r.proc.wait()
        if r.upstream is not None:
            r.upstream.close()
        if r in v.replicas:
            v.replicas.remove(r)
        if not v.serving:
            v.ready_event.clear()
        self.write_state()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ---- routing ----------------------------------------------------------------------------

    def pick_variant(self) -> Variant:
        """Smooth weighted round-robin over the variants with weight > 0."""
        total, best = 0, None
        for v in self.variants.values():
            if v.weight <= 0:
                continue
            v.current += v.weight
            total += v.weight
            if best is None or v.current > best.current:
                best = v
        assert best is not None  # weights sum to 100
        best.current -= total
        return best

    async def acquire(self, v: Variant) -> Optional[Replica]:
        """The variant's least-busy ready replica; with none, start one (cold start) and wait."""
        if not v.serving:
            if not v.live and self.max > 0:
                self.start_replica(v, "a request arrived and the variant has no replica (cold start)")
                v.last_scale_out = time.time()
            try:
                await asyncio.wait_for(v.ready_event.wait(), timeout=self.ready_timeout)
            except asyncio.TimeoutError:
                return None
            if not v.serving:
                return None
        return min(v.serving, key=lambda r: r.in_flight)

    def handle(self, conn: Connection, req: Request) -> None:
        """Route one request (called by the front for each request, in order per connection):
        admin routes answered here, the rest passed to a replica of the chosen variant."""
        if req.path.startswith("/_unijob/"):
            return self._admin(conn, req)
        pinned = next((v.decode("latin-1") for k, v in req.headers if k == PIN_HEADER), None)
        if pinned is not None:
            variant = self.variants.get(pinned)
            if variant is None:
                return conn.respond_json(req, 400, {"error": f"no variant {pinned!r}; the endpoint has "
                                                           f"{', '.join(self.variants)}"})
        else:
            variant = self.pick_variant()
        variant.in_flight += 1
        variant.requests += 1
        serving = variant.serving
        if serving:
            self._forward(conn, req, variant, min(serving, key=_in_flight))
        else:
            self._spawn(self._cold(conn, req, variant))

    async def _cold(self, conn: Connection, req: Request, variant: Variant) -> None:
        replica = await self.acquire(variant)
        if replica is None:
            self._answered(variant, error=True)
            return conn.respond_json(req, 503, {"error": f"variant {variant.name} has no ready replica"},
                                     ((VARIANT_HEADER, variant.name.encode()),))
        self._forward(conn, req, variant, replica)

    def _forward(self, conn: Connection, req: Request, variant: Variant, replica: Replica) -> None:
        replica.in_flight += 1
        headers = [kv for kv in req.headers if kv[0] not in HOP_BY_HOP]
        data = replica.upstream.encode(req.method, req.target, headers, req.body)
        head = req.method == "HEAD"

        def done(error: Optional[BaseException], answer: Optional[tuple]) -> None:
            replica.in_flight -= 1
            self._answered(variant, error=error is not None)
            if error is not None:
                timed_out = isinstance(error, asyncio.TimeoutError)
                why = (f"no answer within {self.request_timeout:g} s (request_timeout)" if timed_out
                       else f"{type(error).__name__}: {error}")
                return conn.respond_json(req, 504 if timed_out else 502,
                                         {"error": f"replica {variant.name}/{replica.index} did not answer: {why}"},
                                         ((VARIANT_HEADER, variant.name.encode()),))
            status, resp_headers, content = answer  # type: ignore[misc]
            out = [kv for kv in resp_headers if kv[0] not in HOP_BY_HOP]
            out.append((VARIANT_HEADER, variant.name.encode()))
            length = next((int(v) for k, v in resp_headers if k == b"content-length"), 0) if head else None
            conn.respond(req, status, out, content, content_length=length)

        replica.upstream.start(data, head, self.request_timeout, done)

    @staticmethod
    def _answered(variant: Variant, *, error: bool) -> None:
        variant.in_flight -= 1
        variant.errors += error
        variant.completed.append(time.monotonic())

    def _admin(self, conn: Connection, req: Request) -> None:
        path, method = req.path, req.method
        if path == "/_unijob/status" and method == "GET":
            return conn.respond_json(req, 200, self.snapshot())
        if path == "/_unijob/traffic" and method == "PUT":
            try:
                split = json.loads(req.body)
                from unijob.contract import validate_split

                split = validate_split({str(k): int(w) for k, w in split.items()}, list(self.variants))
            except Exception as e:  # noqa: BLE001 - a bad request from the CLI
                return conn.respond_json(req, 400, {"error": str(e)})
            for v in self.variants.values():
                v.weight = split.get(v.name, 0)
                v.current = 0
            self.event("traffic split set to " + ", ".join(f"{k}={w}%" for k, w in split.items()))
            return conn.respond_json(req, 200, {"traffic": split})
        return conn.respond_json(req, 404, {"error": f"no admin route {method} {path}"})

    # ---- control loops ----------------------------------------------------------------------

    def recommend(self, v: Variant, now: float) -> int:
        """Replicas the metric asks for, before cool-downs: ``ceil(total / target)`` clamped."""
        while v.samples and v.samples[0][0] < now - self.window:
            v.samples.popleft()
        mono = time.monotonic()
        while v.completed and v.completed[0] < mono - self.window:
            v.completed.popleft()
        if self.metric == "concurrency":
            total = sum(s[1] for s in v.samples) / len(v.samples) if v.samples else 0.0
        else:  # invocations_per_replica_per_minute
            span = min(self.window, max(now - self.created, TICK))
            total = len(v.completed) * 60.0 / span
        desired = math.ceil(round(total / self.target, 6))
        if v.in_flight and desired < 1:
            desired = 1
        return max(self.min, min(self.max, desired))

    async def autoscale(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = time.time()
            for v in self.variants.values():
                v.samples.append((now, v.in_flight))
                desired = self.recommend(v, now)
                v.recommendations.append((now, desired))
                while v.recommendations and v.recommendations[0][0] < now - self.in_cooldown:
                    v.recommendations.popleft()
                live = v.live
                if desired > len(live) and now - v.last_scale_out >= self.out_cooldown:
                    for _ in range(desired - len(live)):
                        self.start_replica(v, f"{self.metric} over target {self.target:g} per replica "
                                              f"(scale out {len(live)} -> {desired})")
                    v.last_scale_out = now
                    continue
                stable = max(d for _, d in v.recommendations)
                settled = now - max(v.last_scale_out, v.last_scale_in, self.created) >= self.in_cooldown
                if stable < len(live) and settled:
                    victims = sorted(live, key=lambda r: (r.ready, -r.in_flight, -r.index))[: len(live) - stable]
                    self.event(f"{v.name}: scale in {len(live)} -> {stable} ({self.metric} under target "
                               f"{self.target:g} for {self.in_cooldown:g} s)")
                    v.last_scale_in = now
                    for r in victims:
                        self._spawn(self.stop_replica(v, r, drain=self.request_timeout))
            self.front.sweep()
            await self.write_state_soon(1.0)

    async def monitor(self) -> None:
        """Replace replicas that died while the variant is below ``min_replicas``."""
        while True:
            await asyncio.sleep(TICK)
            for v in self.variants.values():
                for r in list(v.replicas):
                    code = r.proc.poll()
                    if code is not None and not r.draining:
                        v.replicas.remove(r)
                        v.crash_times.append(time.time())
                        if not v.serving:
                            v.ready_event.clear()
                        self.event(f"{v.name}: replica {r.index} exited with code {code}; see {r.log}")
                if len(v.live) < self.min:
                    recent = [t for t in v.crash_times if t > time.time() - 60]
                    if len(recent) >= 5:
                        continue  # crash loop: wait until the oldest of five leaves the minute
                    for _ in range(self.min - len(v.live)):
                        self.start_replica(v, f"below min_replicas ({self.min})")

    # ---- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop serving, then stop every replica (see :meth:`run`)."""
        self.stopping = True
        self._stop.set()

    async def run(self, sock: socket.socket) -> int:
        """Start ``min_replicas`` per variant, serve until :meth:`request_stop`, stop everything.
        Returns 1 when the replicas could not be started (state FAILED), else 0."""
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        try:
            for v in self.variants.values():
                for _ in range(self.min):
                    self.start_replica(v, f"min_replicas {self.min}")
            if not await self._wait_min_ready():
                return 1 if self.state == "FAILED" else 0
            self.state = "IN_SERVICE"
            self.event(f"in service at {self.url}")
            self._spawn(self.autoscale())
            self._spawn(self.monitor())
            if not self.stopping:
                await self.front.start(sock)
                await self._stop.wait()
                await self.front.stop(grace=STOP_GRACE / 2)
            return 0
        finally:
            final = "FAILED" if self.state == "FAILED" else "STOPPED"
            self.state = "DELETING"
            self.write_state()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*(self.stop_replica(v, r) for v in self.variants.values() for r in list(v.replicas)),
                                 return_exceptions=True)
            self.state = final
            self.event(f"stopped ({final})")

    async def _wait_min_ready(self) -> bool:
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.stopping:
                return False
            for v in self.variants.values():
                for r in v.replicas:
                    code = r.proc.poll()
                    if code is not None:
                        tail = "\n".join(jd.tail(r.log, 15))
                        self.state, self.message = "FAILED", (
                            f"variant {v.name}: replica {r.index} exited with code {code} before it was ready:\n{tail}")
                        self.event(f"{v.name}: replica {r.index} failed to start")
                        return False
            if all(len(v.serving) >= self.min for v in self.variants.values()):
                return True
            await asyncio.sleep(0.05)
        self.state, self.message = "FAILED", (f"replicas were not ready after {self.ready_timeout:.0f} s "
                                              "(deploy_timeout); see the replica logs in " + str(self.dir))
        self.event("deploy timed out")
        return False


def _in_flight(r: Replica) -> int:
    return r.in_flight


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (``uvicorn[standard]``), as uvicorn itself picks
    for the replicas; else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m unijob.local.router [--detach] ENDPOINT_DIR``: serve until SIGTERM; exit 1 if
    the replicas could not be started. ``--detach`` forks first and the parent exits at once, so the
    router is nobody's child (no zombie once it exits)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--detach":  # deploy waits for this parent; the child is the router
        args.pop(0)
        if os.fork():
            os._exit(0)
    endpoint_dir = Path(args[0])
    plan = json.loads((endpoint_dir / "plan.json").read_text())
    body = plan["requests"][0]["body"]
    try:
        sock = listen(body["host"], int(body.get("port") or 0), 2048)
    except OSError as e:
        jd.write_json_atomic(endpoint_dir / "state.json", {
            "name": body["name"], "state": "FAILED", "router_pid": os.getpid(),
            "message": f"cannot listen on {body['host']}:{body.get('port') or 0}: {e.strerror}"})
        return 1
    router = Router(endpoint_dir, body)
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, router.request_stop)
    try:
        return loop.run_until_complete(router.run(sock))
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
