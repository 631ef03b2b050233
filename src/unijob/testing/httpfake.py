"""A base for local fakes of cloud REST APIs: a threaded HTTP server on 127.0.0.1 (random port)
with regex routes, a record of every request, and injected transient failures (429/503).

Each adapter's tests subclass :class:`FakeServer`, register the real REST paths its SDK calls,
and validate every body with the vendor's own types (proto-plus, SDK dataclasses, JSON Schema)
so that a malformed request fails the test. Usage::

    class FakeVertex(FakeServer):
        def __init__(self):
            super().__init__()
            self.route("POST", r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/customJobs", self.create)

        def create(self, req: Request) -> Response:
            job = aiplatform_v1.CustomJob.from_json(req.text, ignore_unknown_fields=False)
            ...
            return Response(200, {...})

    with FakeVertex() as fake:
        client = ...(api_endpoint=fake.url)
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """A request the fake received: method, path (no query), query (name -> list of values),
    headers, raw body, and the route's named groups in ``params``."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8") if self.body else ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}

    def arg(self, name: str, default: Optional[str] = None) -> Optional[str]:
        v = self.query.get(name)
        return v[0] if v else default


@dataclass
class Response:
    """What a route returns: status, a JSON-able body (or bytes/str), extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class FakeServer:
    """Threaded HTTP server on 127.0.0.1 with regex routes. Start/stop it, or use ``with``.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started.
        requests: every request received, in order (including those answered by injected failures).
        errors: exceptions raised by route handlers (a validation failure in a handler is answered
            with HTTP 400 and recorded here, so a test can assert ``fake.errors == []``).
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._failures: list[tuple[Optional[re.Pattern[str]], int, dict[str, str]]] = []
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.lock = threading.RLock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ---- set-up -----------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer ``method`` requests whose path fully matches ``pattern`` with ``handler``."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def fail_next(self, status: int, count: int = 1, *, path: Optional[str] = None,
                  headers: Optional[dict[str, str]] = None) -> None:
        """Answer the next ``count`` requests (matching ``path`` regex, if given) with ``status``
        before routing, e.g. ``fail_next(429, headers={"Retry-After": "0"})`` or ``fail_next(503)``."""
        with self.lock:
            for _ in range(count):
                self._failures.append((re.compile(path) if path else None, status, dict(headers or {})))

    def calls(self, method: str, pattern: str) -> list[Request]:
        """Recorded requests with that method whose path matches ``pattern`` (regex, full match)."""
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method.upper() and rx.fullmatch(r.path)]

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> "FakeServer":
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Request(h.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in h.headers.items()}, body)
        with self.lock:
            self.requests.append(req)
            failure = None
            for i, (rx, status, headers) in enumerate(self._failures):
                if rx is None or rx.fullmatch(req.path):
                    failure = self._failures.pop(i)
                    break
        if failure:
            resp = Response(failure[1], {"error": {"code": failure[1], "message": "injected transient failure"}}, failure[2])
        else:
            resp = self._route(req)
        self._send(h, resp)

    def _route(self, req: Request) -> Response:
        for method, rx, handler in self._routes:
            m = rx.fullmatch(req.path)
            if m and method == req.method:
                req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                try:
                    with self.lock:
                        return handler(req)
                except Exception as e:  # a validation failure: answer 400 and remember it
                    self.errors.append(e)
                    return Response(400, {"error": {"code": 400, "message": f"{type(e).__name__}: {e}"}})
        return Response(404, {"error": {"code": 404, "message": f"no route for {req.method} {req.path}"}})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, resp: Response) -> None:
        if isinstance(resp.body, (bytes, bytearray)):
            data, ctype = bytes(resp.body), "application/octet-stream"
        elif isinstance(resp.body, str):
            data, ctype = resp.body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps({} if resp.body is None else resp.body).encode(), "application/json"
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.headers.pop("Content-Type", ctype))
        h.send_header("Content-Length", str(len(data)))
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
