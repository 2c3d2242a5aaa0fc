"""A fake Anthropic Messages API (an ASGI app, served by uvicorn on 127.0.0.1): it streams the
bytes Anthropic sends (``event: ...`` / ``data: {...}`` frames, pings, tool input in pieces)
and records what it received; it can also fail, or hang up mid-stream. Used by the adapter's
tests and by turns run end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

API_KEY = "sk-ant-api03-SECRET-test-key-0123456789"

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class Reply:
    """What the fake server answers: a status, headers, body pieces (sent one by one), and
    whether the body is finished (``complete=False`` hangs up in the middle of it)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("content-type", "text/event-stream; charset=utf-8")])
    body: list[bytes] = field(default_factory=list)
    complete: bool = True


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


class FakeAnthropic:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        assert (scope["method"], scope["path"]) == ("POST", "/v1/messages")
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(Received(
            {k.decode(): v.decode() for k, v in scope["headers"]}, json.loads(raw),
            scope["client"][1]))
        reply = self.replies.pop(0)
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(k.encode(), v.encode()) for k, v in reply.headers]})
        for piece in reply.body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        if reply.complete:
            await send({"type": "http.response.body", "body": b""})
        # else: return mid-body; uvicorn closes the connection (and logs an error about it).


@contextlib.asynccontextmanager
async def serving(fake: FakeAnthropic) -> AsyncIterator[FakeAnthropic]:
    """``fake`` served by uvicorn on a free port (``fake.url``) until the block ends."""
    config = uvicorn.Config(fake, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    while not running.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{running.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        running.should_exit = True
        await task


# The wire format, byte for byte as the API sends it: compact JSON, but for ping's.
def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def message_start(input_tokens: int = 25, cache_read: int = 0, cache_write: int = 0) -> bytes:
    return event("message_start", {"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "content": [], "model": "claude-sonnet-4-5", "stop_reason": None,
        "stop_sequence": None, "usage": {
            "input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read, "output_tokens": 1,
            "service_tier": "standard"}}})


def text_block(index: int, *pieces: str) -> list[bytes]:
    return [
        event("content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}),
        *[event("content_block_delta", {"type": "content_block_delta", "index": index,
                                        "delta": {"type": "text_delta", "text": piece}})
          for piece in pieces],
        event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def tool_block(index: int, tool_id: str, name: str, *pieces: str) -> list[bytes]:
    return [
        event("content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "tool_use", "id": tool_id,
                                                        "name": name, "input": {}}}),
        *[event("content_block_delta", {"type": "content_block_delta", "index": index,
                                        "delta": {"type": "input_json_delta",
                                                  "partial_json": piece}})
          for piece in pieces],
        event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def message_end(stop_reason: str = "end_turn", output_tokens: int = 15) -> list[bytes]:
    return [
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                "usage": {"output_tokens": output_tokens}}),
        event("message_stop", {"type": "message_stop"}),
    ]


def error_body(kind: str, message: str) -> list[bytes]:
    return [json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()]


JSON = [("content-type", "application/json")]
