"""unijob.local.front: the router's HTTP/1.1 server side, driven by raw sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from unijob.local import front
from unijob.local.front import Connection, FrontServer, Request


def _echo(conn: Connection, req: Request) -> None:
    """Answer at once with what was received; ``/later`` answers after 50 ms, ``/boom`` raises."""
    answer = {"method": req.method, "target": req.target.decode(), "path": req.path, "body": req.body.decode(),
              "headers": [[k.decode(), v.decode()] for k, v in req.headers]}
    if req.path == "/boom":
        raise ValueError("a bug in the router")
    if req.path == "/later":
        asyncio.get_running_loop().call_later(0.05, conn.respond_json, req, 200, answer)
        return
    if req.method == "HEAD":
        return conn.respond(req, 200, [(b"content-type", b"text/plain")], b"", content_length=42)
    conn.respond_json(req, 200, answer)


async def _exchange(payload: bytes, *, handle=_echo, read_until_close: bool = True, wait: float = 0.3) -> bytes:
    server = FrontServer(handle)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    await server.start(sock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        if read_until_close:
            data = await asyncio.wait_for(reader.read(), 5)
        else:
            await asyncio.sleep(wait)
            data = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        return data
    finally:
        await server.stop(grace=1)


def _answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 answers (each with Content-Length) into (status, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        n = int(headers.get("content-length", 0))
        body, data = rest[:n], rest[n:]
        if headers.get("content-type") == "text/plain" and n == 42:  # a HEAD answer: no body followed
            body, data = b"", rest
        out.append((int(lines[0].split()[1]), headers, body))
    return out


def test_pipelined_requests_are_answered_in_order_on_one_connection():
    reqs = (b"POST /later?x=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\none"
            b"GET /second HTTP/1.1\r\nhost: a\r\nX-Mixed-Case: Yes\r\n\r\n"
            b"POST /third HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
    answers = _answers(asyncio.run(_exchange(reqs)))
    bodies = [json.loads(b) for _, _, b in answers]
    assert [(s, b["path"], b["body"]) for (s, _, _), b in zip(answers, bodies)] == [
        (200, "/later", "one"), (200, "/second", ""), (200, "/third", "abc")]
    assert bodies[0]["target"] == "/later?x=1"
    assert ["x-mixed-case", "Yes"] in bodies[1]["headers"]  # names lower-cased, values as sent
    assert "connection" not in answers[0][1] and answers[2][1]["connection"] == "close"


def test_http_1_0_closes_unless_asked_to_keep_alive_and_head_has_no_body():
    data = asyncio.run(_exchange(b"GET /a HTTP/1.0\r\n\r\n"))
    (status, headers, body), = _answers(data)
    assert status == 200 and headers["connection"] == "close" and json.loads(body)["path"] == "/a"
    data = asyncio.run(_exchange(b"HEAD /h HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 42\r\n" in data
    assert data.endswith(b"\r\n\r\n")  # the announced length, no body


def test_expect_100_continue_is_answered_before_the_body():
    async def go():
        server = FrontServer(_echo)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        await server.start(sock)
        reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        writer.write(b"POST /p HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"hi")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        await server.stop(grace=1)
        return interim, head

    interim, head = asyncio.run(go())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and head.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("raw,status,words", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
    (b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n", 501, "WebSocket"),
])
def test_unreadable_requests_are_refused_and_closed(raw, status, words):
    data = asyncio.run(_exchange(raw))
    (got, headers, body), = _answers(data)
    assert got == status and headers["connection"] == "close" and words in json.loads(body)["error"]


def test_a_body_over_the_limit_gets_413(monkeypatch):
    monkeypatch.setattr(front, "MAX_BODY", 10)
    data = asyncio.run(_exchange(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 20\r\n\r\n" + b"x" * 20))
    (status, _, body), = _answers(data)
    assert status == 413 and "over the limit of 10 bytes" in json.loads(body)["error"]


def test_a_router_bug_answers_500_and_the_connection_keeps_serving():
    data = asyncio.run(_exchange(b"GET /boom HTTP/1.1\r\nhost: a\r\n\r\n"
                                 b"GET /fine HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"))
    (s1, _, b1), (s2, _, b2) = _answers(data)
    assert s1 == 500 and "ValueError: a bug in the router" in json.loads(b1)["error"]
    assert s2 == 200 and json.loads(b2)["path"] == "/fine"


def test_idle_connections_are_swept_but_busy_ones_are_not(monkeypatch):
    async def go():
        held: list = []
        server = FrontServer(lambda conn, req: held.append((conn, req)))  # never answers by itself
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        await server.start(sock)
        port = sock.getsockname()[1]
        _, idle_w = await asyncio.open_connection("127.0.0.1", port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        busy_w.write(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n")
        await asyncio.sleep(0.2)
        monkeypatch.setattr(front, "KEEP_ALIVE", 0.1)
        server.sweep()
        await asyncio.sleep(0.1)
        open_after_sweep = len(server.connections)
        conn, req = held[0]
        conn.respond(req, 204, [], b"")
        answer = await asyncio.wait_for(busy_r.readuntil(b"\r\n\r\n"), 5)
        idle_w.close()
        busy_w.close()
        await server.stop(grace=1)
        return open_after_sweep, answer

    open_after_sweep, answer = asyncio.run(go())
    assert open_after_sweep == 1 and answer.startswith(b"HTTP/1.1 204 No Content")
