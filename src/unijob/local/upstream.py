"""The router's HTTP/1.1 client to one replica: a pool of keep-alive connections, nothing else.

A local endpoint's router forwards every request to a replica on 127.0.0.1 and reads the whole
answer back. A general client (httpx) spent ~1 ms a request on that hop: building and
normalizing request and response objects, header validation, per-request timeouts. This one
writes the request in one ``send`` (request line, headers, body; TCP_NODELAY) on an idle pooled
connection and parses the answer with ``readuntil``/``readexactly``: ``Content-Length`` and
``chunked`` bodies, ``Connection: close`` honoured, no decoding (the body goes on unchanged).

A pooled connection the replica closed while idle (uvicorn's keep-alive timeout is 5 s) fails
before any byte of an answer arrives; such a request is sent once more on a new connection, as
HTTP clients do for idle connections (RFC 9112 section 9.3.1). Any other failure closes the
connection and propagates.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Optional

#: Idle connections kept per replica (more are opened under load and closed when returned).
MAX_IDLE = 64
_MAX_HEADER = 64 * 1024
_timeout = getattr(asyncio, "timeout", None)


class UpstreamError(Exception):
    """The replica's answer was not valid HTTP/1.1 (or the connection broke mid-answer)."""


class Upstream:
    """Keep-alive connections to ``http://host:port``, or with ``unix`` to the Unix socket of
    that name (a path, or on Linux ``\\0name`` for the abstract namespace; ``host`` is then only
    the ``Host`` header)."""

    def __init__(self, host: str, port: Optional[int] = None, *, unix: Optional[str] = None,
                 max_idle: int = MAX_IDLE) -> None:
        self.host, self.port, self.unix = host, port, unix
        self.authority = (host if unix else f"{host}:{port}").encode()
        self.max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix is not None:
            # Connected here: uvloop's open_unix_connection refuses abstract names (EINVAL).
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, self.unix)
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_unix_connection(sock=sock, limit=_MAX_HEADER)
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=_MAX_HEADER)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def request(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                      timeout: Optional[float]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request; return ``(status, headers, body)``. ``headers`` must hold no
        ``Host``, ``Content-Length``, ``Transfer-Encoding`` or ``Connection`` (set here).

        Raises:
            asyncio.TimeoutError: no whole answer within ``timeout`` seconds.
            OSError, UpstreamError: the replica refused, reset or broke the connection, or
                answered something that is not HTTP/1.1.
        """
        head = b"".join([method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self.authority,
                         b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n",
                         *(b"%s: %s\r\n" % (k, v) for k, v in headers), b"\r\n"])
        data = head + body
        if timeout is None:
            return await self._exchange(data, method == "HEAD")
        if _timeout is not None:  # Python 3.11+: no extra task per request
            async with _timeout(timeout):
                return await self._exchange(data, method == "HEAD")
        return await asyncio.wait_for(self._exchange(data, method == "HEAD"), timeout)

    async def _exchange(self, data: bytes, head_only: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                return await self._send(reader, writer, data, head_only)
            except _StaleConnection:
                continue  # closed by the replica while idle: try the next one, then a new one
        reader, writer = await self._connect()
        try:
            return await self._send(reader, writer, data, head_only)
        except _StaleConnection:
            raise UpstreamError("the replica closed the connection without answering") from None

    async def _send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                    head_only: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        keep = False
        try:
            writer.write(data)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    raise _StaleConnection() from None
                raise UpstreamError("the replica closed the connection mid-answer") from None
            except (ConnectionResetError, BrokenPipeError):
                raise _StaleConnection() from None
            except asyncio.LimitOverrunError:
                raise UpstreamError(f"the replica's response headers are over {_MAX_HEADER} bytes") from None
            status, headers, length, chunked, keep = _parse_head(raw)
            while 100 <= status < 200 and status != 101:  # interim answers (100 Continue): skip
                raw = await reader.readuntil(b"\r\n\r\n")
                status, headers, length, chunked, keep = _parse_head(raw)
            if head_only or status in (101, 204, 304):
                body = b""
            elif chunked:
                body = await _read_chunked(reader)
            elif length is not None:
                body = await reader.readexactly(length)
            else:
                body, keep = await reader.read(), False
            return status, headers, body
        except asyncio.IncompleteReadError:
            keep = False
            raise UpstreamError("the replica closed the connection mid-answer") from None
        except BaseException:
            keep = False
            raise
        finally:
            if keep and len(self._idle) < self.max_idle:
                self._idle.append((reader, writer))
            else:
                writer.close()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop()[1].close()


class _StaleConnection(Exception):
    """A reused connection ended before the first byte of the answer."""


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], Optional[int], bool, bool]:
    """``(status, headers, content_length, chunked, keep_alive)`` of a response head."""
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = []
    length: Optional[int] = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError(f"bad response header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise UpstreamError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            keep = b"close" not in tokens and (keep or b"keep-alive" in tokens)
        headers.append((name, value))
    return status, headers, length, chunked, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise UpstreamError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
