"""The router's HTTP/1.1 client to one replica: a pool of keep-alive connections, nothing else.

A local endpoint's router forwards every request to a replica (an abstract Unix socket, or
127.0.0.1) and reads the whole answer back. Each pooled connection is an :class:`asyncio.Protocol`
whose answers are parsed by httptools (llhttp, the parser uvicorn serves with): the request goes
out in one ``write`` (request line, headers, body), and when the answer is complete a callback
gets it, with no task, future or stream reader per request. Against the previous
``asyncio.StreamReader`` client this took ~15 us of CPU off each request
(``benchmarks/bench_serving.py``). ``Content-Length``, ``chunked`` and read-until-close bodies are
read, interim ``1xx`` answers skipped, ``Connection: close`` honoured; the body is passed on
undecoded.

A pooled connection the replica closed while idle (uvicorn's keep-alive timeout is 5 s) leaves the
pool when it closes; one that closes just as a request is sent ends before any byte of an answer,
and that request is sent once more on another connection, as HTTP clients do for idle
connections (RFC 9112 section 9.3.1). Any other failure closes the connection and is reported.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Optional

import httptools

#: Idle connections kept per replica (more are opened under load and closed when returned).
MAX_IDLE = 64
_MAX_HEADER = 64 * 1024

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]
#: ``done(error, answer)``: exactly one of them is None.
Done = Callable[[Optional[BaseException], Optional[Answer]], None]


class UpstreamError(Exception):
    """The replica's answer was not valid HTTP/1.1 (or the connection broke mid-answer)."""


class _Stale(Exception):
    """A reused connection ended before the first byte of the answer."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection to a replica; at most one request in flight."""

    def __init__(self, pool: "Upstream") -> None:
        self.pool = pool
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: Optional[Done] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.closed = False
        self._begin(False)

    def _begin(self, head_only: bool) -> None:
        self.head_only = head_only
        self.got_bytes = self.complete = self.headers_done = False
        self.status = 0
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.header_size = 0
        self.keep = True

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done is None:  # bytes nobody asked for: the connection is out of step
            self.transport.close()  # type: ignore[union-attr]
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return self._fail(UpstreamError("the replica switched protocols (101); the router speaks HTTP/1.1 only"))
        except httptools.HttpParserError as e:
            if not self.complete:
                return self._fail(UpstreamError(f"the replica's answer is not valid HTTP/1.1: {e}"))
            self.keep = False  # bytes after a complete answer: do not reuse the connection
        if self.header_size > _MAX_HEADER:
            self._fail(UpstreamError(f"the replica's response headers are over {_MAX_HEADER} bytes"))
        elif self.complete or (self.head_only and self.headers_done):
            self._finish()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.pool._forget(self)
        if self.done is None:
            return
        if self.headers_done and not self.complete and self._reads_to_close():
            self.keep = False
            self._finish()
        elif not self.got_bytes:
            self._fail(_Stale())
        else:
            self._fail(UpstreamError("the replica closed the connection mid-answer"))

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_size += len(name) + len(value) + 4
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.body, self.headers_done, self.header_size = [], [], False, 0
            return
        self.complete = True
        self.keep = self.keep and self.parser.should_keep_alive()

    # -- the exchange ----------------------------------------------------------------------------

    def _reads_to_close(self) -> bool:
        names = {k for k, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def send(self, data: bytes, head_only: bool, timeout: Optional[float], done: Done) -> None:
        self._begin(head_only)
        self.done = done
        if timeout is not None:
            self.timer = asyncio.get_running_loop().call_later(timeout, self._time_out)
        self.transport.write(data)  # type: ignore[union-attr]

    def _time_out(self) -> None:
        self.timer = None
        self._fail(asyncio.TimeoutError())

    def _settle(self) -> Optional[Done]:
        done, self.done = self.done, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return done

    def _finish(self) -> None:
        done = self._settle()
        answer = (self.status, self.headers, b"".join(self.body))
        if self.head_only and not self.complete:
            self.keep = False  # llhttp would read the announced body of a HEAD answer
        if self.keep and not self.closed:
            self.pool._release(self)
        else:
            self._close()
        if done is not None:
            done(None, answer)

    def _fail(self, error: BaseException) -> None:
        done = self._settle()
        self._close()
        if done is not None:
            done(error, None)

    def _close(self) -> None:
        self.pool._forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Upstream:
    """Keep-alive connections to ``http://host:port``, or with ``unix`` to the Unix socket of
    that name (a path, or on Linux ``\\0name`` for the abstract namespace; ``host`` is then only
    the ``Host`` header)."""

    def __init__(self, host: str, port: Optional[int] = None, *, unix: Optional[str] = None,
                 max_idle: int = MAX_IDLE) -> None:
        self.host, self.port, self.unix = host, port, unix
        self.authority = (host if unix else f"{host}:{port}").encode()
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._tasks: set[asyncio.Task] = set()

    def encode(self, method: str, target: bytes, headers: Headers, body: bytes) -> bytes:
        """The request as sent: ``headers`` must hold no ``Host``, ``Content-Length``,
        ``Transfer-Encoding`` or ``Connection`` (set here)."""
        return b"".join([method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self.authority,
                         b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n",
                         *[b"%s: %s\r\n" % kv for kv in headers], b"\r\n", body])

    def start(self, data: bytes, head_only: bool, timeout: Optional[float], done: Done) -> None:
        """Send the encoded request ``data`` (:meth:`encode`) on an idle connection, or a new one,
        and call ``done(error, answer)`` once, from the event loop: ``answer`` is
        ``(status, headers, body)`` with lower-case header names; ``error`` is
        :class:`asyncio.TimeoutError` (no whole answer within ``timeout`` seconds),
        :class:`OSError` (refused, reset) or :class:`UpstreamError`. Must run on the loop."""
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            conn.send(data, head_only, timeout, self._retrying(data, head_only, timeout, done))
            return
        task = asyncio.get_running_loop().create_task(self._connect_and_send(data, head_only, timeout, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retrying(self, data: bytes, head_only: bool, timeout: Optional[float], done: Done) -> Done:
        def on_done(error: Optional[BaseException], answer: Optional[Answer]) -> None:
            if isinstance(error, _Stale):  # closed by the replica while idle: another one
                self.start(data, head_only, timeout, done)
            else:
                done(error, answer)
        return on_done

    async def _connect_and_send(self, data: bytes, head_only: bool, timeout: Optional[float], done: Done) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            if timeout is None:
                conn = await self._connect()
            else:
                conn = await asyncio.wait_for(self._connect(), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            return done(e, None)

        def on_done(error: Optional[BaseException], answer: Optional[Answer]) -> None:
            if isinstance(error, _Stale):
                error = UpstreamError("the replica closed the connection without answering")
            done(error, answer)

        left = None if timeout is None else max(timeout - (loop.time() - t0), 0.001)
        conn.send(data, head_only, left, on_done)

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        if self.unix is not None:
            # Connected here: uvloop's create_unix_connection refuses abstract names (EINVAL).
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, self.unix)
                _, conn = await loop.create_unix_connection(lambda: _Conn(self), sock=sock)
            except BaseException:
                sock.close()
                raise
            return conn
        _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    async def request(self, method: str, target: bytes, headers: Headers, body: bytes,
                      timeout: Optional[float]) -> Answer:
        """Send one request; return ``(status, headers, body)`` (see :meth:`start`).

        Raises:
            asyncio.TimeoutError: no whole answer within ``timeout`` seconds.
            OSError, UpstreamError: the replica refused, reset or broke the connection, or
                answered something that is not HTTP/1.1.
        """
        future = asyncio.get_running_loop().create_future()

        def done(error: Optional[BaseException], answer: Optional[Answer]) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(answer)

        self.start(self.encode(method, target, headers, body), method == "HEAD", timeout, done)
        return await future

    def _release(self, conn: _Conn) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn._close()

    def _forget(self, conn: _Conn) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop()._close()


__all__ = ["Answer", "Done", "Upstream", "UpstreamError"]
