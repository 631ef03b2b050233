"""The router's HTTP/1.1 server side: an :class:`asyncio.Protocol` over httptools.

A local endpoint's router only passes requests on (:mod:`unijob.local.router`), so it does not
need an ASGI server: uvicorn built a scope, a task and a request-response cycle per request and
wrote each answer in two system calls, which cost the router ~35 us of CPU a request, more than
half of the hop (``benchmarks/bench_serving.py``). Here httptools (llhttp, the parser uvicorn
itself serves with) parses each request into a :class:`Request`, the router's ``handle`` is
called with it, and the router answers with :meth:`Connection.respond`, head and body in one write.

HTTP/1.1 as clients expect it:

* keep-alive, and HTTP/1.0 clients answered with ``Connection: close`` unless they asked to keep
  it; pipelined requests are answered in order, one at a time per connection (reading pauses
  when :data:`MAX_PIPELINE` wait);
* ``Expect: 100-continue`` gets ``100 Continue`` before the body is read; ``chunked`` request
  bodies are decoded; a body over :data:`MAX_BODY` bytes gets 413 and the connection closes;
* a request that is not HTTP/1.x gets 400, an ``Upgrade`` (WebSocket) 501, and the connection
  closes; a connection with no request in progress and nothing received for :data:`KEEP_ALIVE`
  seconds is closed (uvicorn's default keep-alive timeout), checked by :meth:`FrontServer.sweep`.
"""

from __future__ import annotations

import asyncio
import collections
import http
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import httptools

#: Seconds an idle client connection is kept open (uvicorn's ``timeout_keep_alive`` default).
KEEP_ALIVE = 5.0
#: Largest request body passed on, in bytes (the replicas' own limit is lower: 6 MiB by default).
MAX_BODY = 256 * 1024 * 1024
#: Requests read ahead on one connection before reading pauses.
MAX_PIPELINE = 16
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


@dataclass
class Request:
    """One parsed request: ``target`` is the raw path and query as sent, ``path`` the path
    alone, ``headers`` the header fields in order with lower-case names."""

    method: str
    target: bytes
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


Handle = Callable[["Connection", Request], None]


class Connection(asyncio.Protocol):
    """One client connection. ``handle(connection, request)`` is called for each request, in
    order, and must lead to exactly one :meth:`respond` (now or later, from the event loop)."""

    def __init__(self, server: "FrontServer") -> None:
        self.server = server
        self.handle = server.handle
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Optional[asyncio.Transport] = None
        self.queue: collections.deque[Request] = collections.deque()
        self.current: Optional[Request] = None
        self.closed = self.paused = False
        self.last_active = time.monotonic()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._refused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.queue.clear()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self._refused and self.transport.is_closing():  # type: ignore[union-attr]
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refused = False
            self._refuse(501, "protocol upgrades (WebSocket) are not supported by the endpoint")
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _TooLarge):
                self._refuse(413, f"the request body is over the limit of {MAX_BODY} bytes")
            elif not self._refused:
                self._refuse(400, f"malformed HTTP request: {e}")
        if len(self.queue) >= MAX_PIPELINE and not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", [], [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():  # refused once the parser stops (HttpParserUpgrade)
            self._refused = True
            return
        if self.current is None and not self.queue:
            for name, value in self._headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise _TooLarge()
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        target = self._url
        path = target.split(b"?", 1)[0].decode("latin-1")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(self.parser.get_method().decode("ascii"), target, path, self._headers, body,
                          self.parser.should_keep_alive())
        if self.current is None:
            self._dispatch(request)
        else:
            self.queue.append(request)

    # -- answers ---------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> None:
        self.current = request
        try:
            self.handle(self, request)
        except Exception as e:  # noqa: BLE001 - a router bug: answer 500, keep serving
            import logging

            logging.getLogger("unijob.local.router").exception("handling %s %s failed", request.method, request.path)
            if self.current is request:
                self.respond_json(request, 500, {"error": f"the router failed: {type(e).__name__}: {e}"})

    def respond(self, request: Request, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                *, content_length: Optional[int] = None) -> None:
        """Answer ``request`` (the one in progress): ``headers`` must hold no ``Content-Length``,
        ``Connection`` or ``Transfer-Encoding`` (set here). ``content_length`` overrides the
        length sent (a ``HEAD`` answer announces the length a ``GET`` would have, and has no body)."""
        if request is not self.current:
            raise RuntimeError("respond() called for a request that is not in progress")
        self.current = None
        if self.closed:
            return
        keep = request.keep_alive and not self._refused
        length = len(body) if content_length is None else content_length
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
                 *[b"%s: %s\r\n" % kv for kv in headers],
                 b"content-length: %d\r\n" % length]
        if not keep:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if request.method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))  # type: ignore[union-attr]
        self.last_active = time.monotonic()
        if not keep:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.queue:
            self._dispatch(self.queue.popleft())
        if self.paused and len(self.queue) < MAX_PIPELINE // 2 and not self.closed:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def respond_json(self, request: Request, status: int, obj: Any,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer ``request`` with ``obj`` as JSON."""
        self.respond(request, status, [(b"content-type", b"application/json"), *headers], json.dumps(obj).encode())

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be read, then close: after a parse error the stream is
        out of step. Answered at once if no request is in progress, else the connection closes."""
        self._refused = True
        self.queue.clear()
        if self.current is None and not self.closed:
            data = json.dumps({"error": message}).encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"  # type: ignore[union-attr]
                                 b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(data), data))
            self.transport.close()  # type: ignore[union-attr]


class _TooLarge(Exception):
    """Raised from ``on_body``; httptools re-raises it as the context of a parser error."""


class FrontServer:
    """The listening side: ``await start(sock)``, ``sweep()`` now and then, ``await stop()``."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.connections: set[Connection] = set()
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, sock: Any) -> None:
        """Serve on the listening socket ``sock``."""
        self._server = await asyncio.get_running_loop().create_server(lambda: Connection(self), sock=sock)

    def sweep(self) -> None:
        """Close connections idle for more than :data:`KEEP_ALIVE` seconds."""
        cutoff = time.monotonic() - KEEP_ALIVE
        for c in list(self.connections):
            if c.current is None and not c.queue and c.last_active < cutoff and c.transport is not None:
                c.transport.close()

    async def stop(self, grace: float) -> None:
        """Stop accepting, wait up to ``grace`` seconds for requests in progress, close the rest."""
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while any(c.current is not None or c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()


__all__ = ["Connection", "FrontServer", "KEEP_ALIVE", "MAX_BODY", "Request"]
