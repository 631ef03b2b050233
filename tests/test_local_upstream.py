"""unijob.local.upstream: the router's keep-alive client, against a raw asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys

import pytest

from unijob.local.upstream import Upstream, UpstreamError


async def _serve(answers: list[bytes], *, close_after: int = 0):
    """A server that answers each request (read up to its end) with the next of ``answers``; with
    ``close_after`` it closes a connection after that many answers. Returns (server, port, seen)."""
    seen: list[bytes] = []
    queue = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                seen.append(head + await reader.readexactly(length))
                answer = queue.pop(0)
                writer.write(answer)
                await writer.drain()
                served += 1
                if (close_after and served >= close_after) or b"connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def _run(coro):
    return asyncio.run(coro)


def test_content_length_answers_reuse_one_connection():
    async def go():
        ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        server, port, seen = await _serve([ok, ok, ok])
        up = Upstream("127.0.0.1", port)
        outs = [await up.request("POST", b"/invocations?x=1", [(b"x-a", b"b")], b"[1]", 5) for _ in range(3)]
        up.close()
        server.close()
        return outs, seen, len(up._idle)

    outs, seen, _ = _run(go())
    assert outs[0] == (200, [(b"content-type", b"application/json"), (b"content-length", b"2")], b"{}")
    assert seen[0].startswith(b"POST /invocations?x=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"\r\ncontent-length: 3\r\nx-a: b\r\n\r\n[1]" in seen[0]
    assert len(seen) == 3


def test_chunked_and_connection_close():
    async def go():
        chunked = (b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: t\r\n\r\n")
        close = b"HTTP/1.1 500 Oops\r\nconnection: close\r\n\r\nbye"
        server, port, _ = await _serve([chunked, close])
        up = Upstream("127.0.0.1", port)
        a = await up.request("GET", b"/a", [], b"", 5)
        idle_after_chunked = len(up._idle)
        b = await up.request("GET", b"/b", [], b"", 5)
        idle_after_close = len(up._idle)
        server.close()
        return a, b, idle_after_chunked, idle_after_close

    a, b, idle1, idle2 = _run(go())
    assert (a[0], a[2]) == (201, b"abcde") and idle1 == 1
    assert (b[0], b[2]) == (500, b"bye") and idle2 == 0  # read to EOF, not reused


def test_interim_100_continue_is_skipped():
    async def go():
        answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        server, port, _ = await _serve([answer])
        up = Upstream("127.0.0.1", port)
        out = await up.request("POST", b"/", [], b"x" * 2000, 5)
        server.close()
        return out

    status, headers, body = _run(go())
    assert (status, body) == (200, b"ok")


def test_a_connection_closed_while_idle_is_replaced():
    async def go():
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1"
        server, port, seen = await _serve([ok, ok], close_after=1)  # every connection serves one request
        up = Upstream("127.0.0.1", port)
        first = await up.request("GET", b"/", [], b"", 5)
        await asyncio.sleep(0.05)
        second = await up.request("GET", b"/", [], b"", 5)
        server.close()
        return first, second, len(seen)

    first, second, n = _run(go())
    assert first[2] == second[2] == b"1" and n == 2


def test_timeouts_refusals_and_garbage_raise():
    async def go():
        errors = []
        server, port, _ = await _serve([b"SMTP ready\r\n\r\n"])
        up = Upstream("127.0.0.1", port)
        for call in (lambda: up.request("GET", b"/", [], b"", 5),):
            try:
                await call()
            except UpstreamError as e:
                errors.append(str(e))
        server.close()

        async def silent(reader, writer):
            await asyncio.sleep(5)

        quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
        try:
            await Upstream("127.0.0.1", quiet.sockets[0].getsockname()[1]).request("GET", b"/", [], b"", 0.2)
        except asyncio.TimeoutError:
            errors.append("timeout")
        quiet.close()
        try:
            await Upstream("127.0.0.1", port).request("GET", b"/", [], b"", 1)
        except OSError:
            errors.append("refused")
        return errors

    errors = _run(go())
    assert len(errors) == 3 and "not valid HTTP/1.1" in errors[0], errors
    assert errors[1:] == ["timeout", "refused"]


@pytest.mark.parametrize("raw", [b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"])
def test_bad_headers_raise(raw):
    async def go():
        server, port, _ = await _serve([raw])
        try:
            with pytest.raises(UpstreamError):
                await Upstream("127.0.0.1", port).request("GET", b"/", [], b"", 5)
        finally:
            server.close()

    _run(go())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's")
@pytest.mark.parametrize("loop_factory", ["asyncio", "uvloop"])
def test_a_replica_socket_is_reached_over_keep_alive_on_either_event_loop(loop_factory):
    """The router's replicas listen on abstract Unix sockets (replica_socket); uvloop's own
    open_unix_connection refuses those names, so the pool connects the socket itself."""
    from unijob.local.replicas import replica_socket

    async def go():
        sock, address, up = replica_socket()
        seen: list[bytes] = []

        async def handle(reader, writer):
            while True:
                try:
                    seen.append(await reader.readuntil(b"\r\n\r\n"))
                except asyncio.IncompleteReadError:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            writer.close()

        server = await asyncio.start_unix_server(handle, sock=sock)
        outs = [await up.request("GET", b"/ping", [], b"", 5) for _ in range(3)]
        up.close()
        server.close()
        return address, outs, seen

    if loop_factory == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        address, outs, seen = loop.run_until_complete(go())
    finally:
        loop.close()
    assert address.startswith("unix:@unijob-")
    assert [o[2] for o in outs] == [b"ok"] * 3 and len(seen) == 3
    assert seen[0].startswith(b"GET /ping HTTP/1.1\r\nhost: localhost\r\n")


def test_head_answer_has_no_body_and_its_connection_is_not_reused():
    async def go():
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 42\r\n\r\n"
        server, port, seen = await _serve([head])
        up = Upstream("127.0.0.1", port)
        out = await up.request("HEAD", b"/ping", [], b"", 5)
        idle = len(up._idle)
        server.close()
        return out, idle

    (status, headers, body), idle = _run(go())
    assert (status, body, idle) == (200, b"", 0)
    assert (b"content-length", b"42") in headers  # passed on: the length a GET would have


def test_response_headers_over_the_limit_raise():
    async def go():
        huge = b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n"
        server, port, _ = await _serve([huge])
        try:
            with pytest.raises(UpstreamError, match="over 65536 bytes"):
                await Upstream("127.0.0.1", port).request("GET", b"/", [], b"", 5)
        finally:
            server.close()

    _run(go())
