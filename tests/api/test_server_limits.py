"""The HTTP server's limits (api/server.py), over raw sockets against real uvicorn run with the
Config ``spool serve`` uses: header size and count (431), a head or a body that does not arrive
in time (408, then closed), idle keep-alive connections closed, connections past the cap (503).
Limits are small so each test is quick; every wait is a bounded wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import uvicorn

from api.app import create_app
from api.server import server_config
from engine.engine import Engine
from engine.settings import Settings
from tests.conftest import ADMIN_TOKEN

DEADLINE = 30.0  # generous: only an upper bound on what must happen
LIMITS: dict[str, Any] = {
    "http_max_header_bytes": 4096, "http_max_headers": 20,
    "http_header_timeout_seconds": 0.5, "http_body_timeout_seconds": 1.0,
    "http_keepalive_seconds": 0.5, "http_max_connections": 50,
}

Serve = Callable[..., contextlib.AbstractAsyncContextManager[int]]


@pytest.fixture
def serve(settings: Settings, engine: Engine) -> Serve:
    """``async with serve(**overrides) as port``: a uvicorn server on ``server_config``."""

    @contextlib.asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[int]:
        limited = msgspec.structs.replace(settings, port=0, **{**LIMITS, **overrides})
        server = uvicorn.Server(server_config(create_app(limited, engine), limited))
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.01)
        try:
            yield server.servers[0].sockets[0].getsockname()[1]
        finally:
            server.should_exit = True
            await task

    return running


class Answer(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json"
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines if line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection (EOF or reset), within the deadline; what
    arrives meanwhile is discarded."""
    async with asyncio.timeout(DEADLINE):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass
    return True


async def refused(port: int, request: bytes) -> Answer:
    """Send ``request``, read the answer, and check the server closed the connection."""
    reader, writer = await connect(port)
    try:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            writer.write(request)
            await writer.drain()
        answer = await read_answer(reader)
        assert answer.headers["connection"] == "close"
        assert await closed(reader)
        return answer
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def drip(writer: asyncio.StreamWriter, data: bytes, pause: float,
               chunk: int = 1) -> AsyncIterator[None]:
    """Send ``data`` ``chunk`` bytes at a time in the background (until the block ends or the
    server hangs up), then close the connection."""

    async def send() -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for start in range(0, len(data), chunk):
                writer.write(data[start:start + chunk])
                await writer.drain()
                await asyncio.sleep(pause)

    task = asyncio.create_task(send())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()


def get(path: str = "/healthz", *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: spool.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_request_within_the_limits_is_served(serve: Serve) -> None:
    async with serve() as port:
        reader, writer = await connect(port)
        writer.write(get("/healthz", *[f"X-H{i}: v" for i in range(15)]))
        answer = await read_answer(reader)
        assert answer.status == 200, answer
        writer.close()


async def test_a_header_over_the_size_limit_is_431(serve: Serve) -> None:
    async with serve() as port:
        answer = await refused(port, get("/healthz", "X-Big: " + "a" * 5000))
        assert answer.status == 431
        error = answer.error()
        assert error["type"] == "invalid_request"
        assert error["details"] == {"field": "headers", "limit": 4096}
        assert "4096 bytes" in error["message"]


async def test_a_header_that_never_ends_is_431_before_it_is_all_read(serve: Serve) -> None:
    """10 MB of one header value, sent without its end: httptools would buffer all of it."""
    async with serve() as port:
        reader, writer = await connect(port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: spool.test\r\nX-Big: ")
        async with drip(writer, b"a" * 10_000_000, pause=0, chunk=65536):
            answer = await read_answer(reader)  # while the header is still being sent
        assert answer.status == 431
        assert answer.error()["details"]["field"] == "headers"


async def test_too_many_headers_is_431(serve: Serve) -> None:
    async with serve() as port:
        answer = await refused(port, get("/healthz", *[f"X-H{i}: v" for i in range(10_000)]))
        assert answer.status == 431
        error = answer.error()
        assert error["details"] == {"field": "headers", "limit": 20}
        assert "more than 20 request headers" in error["message"]


async def test_a_half_sent_head_is_408_and_closed(serve: Serve) -> None:
    async with serve() as port:
        answer = await refused(port, b"GET /healthz HTTP/1.1\r\nHost: spool.test\r\n")
        assert answer.status == 408
        assert answer.error()["details"] == {"field": "headers", "limit": 0.5}


async def test_a_head_sent_a_byte_at_a_time_is_408(serve: Serve) -> None:
    """The head timeout is a total: bytes trickling in do not restart it."""
    async with serve() as port:
        reader, writer = await connect(port)
        head = b"GET /healthz HTTP/1.1\r\nHost: spool.test\r\nX-Slow: " + b"a" * 400
        async with drip(writer, head, pause=0.02):  # 450 bytes at 50 a second: 9 s
            answer = await read_answer(reader)
        assert answer.status == 408
        assert await closed(reader)


async def test_a_connection_that_sends_nothing_is_closed(serve: Serve) -> None:
    async with serve() as port:
        reader, writer = await connect(port)
        try:
            async with asyncio.timeout(DEADLINE):
                assert await reader.read() == b""  # closed, and nothing to answer
        finally:
            writer.close()


async def test_a_short_body_is_408_and_closed(serve: Serve) -> None:
    async with serve() as port:
        request = (b"POST /v1/tenants HTTP/1.1\r\nHost: spool.test\r\n"
                   b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                   b'{"name": "')  # 10 of the 100 bytes
        answer = await refused(port, request)
        assert answer.status == 408
        assert answer.error()["details"] == {"field": "body", "limit": 1.0}


async def test_a_body_sent_a_byte_at_a_time_is_408(serve: Serve) -> None:
    """The body timeout is a total too: 100 bytes at one per 50 ms take longer than 1 s."""
    async with serve() as port:
        reader, writer = await connect(port)
        writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: spool.test\r\n"
                     b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        async with drip(writer, b" " * 100, pause=0.05):
            answer = await read_answer(reader)
        assert answer.status == 408
        assert answer.error()["details"]["field"] == "body"
        assert await closed(reader)


async def test_an_idle_keep_alive_connection_is_closed(serve: Serve) -> None:
    async with serve() as port:
        reader, writer = await connect(port)
        try:
            writer.write(get())
            assert (await read_answer(reader)).status == 200
            writer.write(get())  # still open right after an answer: keep-alive
            assert (await read_answer(reader)).status == 200
            async with asyncio.timeout(DEADLINE):
                assert await reader.read() == b""  # then closed once idle
        finally:
            writer.close()


async def test_a_connection_idle_after_a_late_body_is_closed(serve: Serve) -> None:
    """The app answered (401) before reading the body; the body comes after the answer. Its
    bytes cancelled the keep-alive timer, which uvicorn arms only on a response."""
    async with serve(http_body_timeout_seconds=60) as port:
        reader, writer = await connect(port)
        try:
            writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: spool.test\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 12\r\n\r\n")
            assert (await read_answer(reader)).status == 401
            writer.write(b'{"name": "x"}'[:12])
            async with asyncio.timeout(DEADLINE):
                assert await reader.read() == b""  # closed once idle
        finally:
            writer.close()


async def test_connections_past_the_cap_are_503(serve: Serve) -> None:
    async with serve(http_max_connections=2, http_keepalive_seconds=60) as port:
        held = [await connect(port) for _ in range(2)]
        for reader, writer in held:  # both served, and kept open
            writer.write(get())
            assert (await read_answer(reader)).status == 200
        answer = await refused(port, get())
        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        error = answer.error()
        assert error["type"] == "unavailable"
        assert "limit of 2 connections" in error["message"]
        held[0][1].close()  # one hangs up: its place is free again
        async with asyncio.timeout(DEADLINE):
            while True:
                reader, writer = await connect(port)
                writer.write(get())
                status = (await read_answer(reader)).status
                writer.close()
                if status == 200:
                    break
                await asyncio.sleep(0.05)
        held[1][1].close()
