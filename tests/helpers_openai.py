"""A fake OpenAI Chat Completions server on a real socket: a raw asyncio HTTP/1.1 server on
127.0.0.1 that records each request and answers with the exact wire format OpenAI streams
(``data:`` chunks, the usage chunk with empty ``choices``, ``data: [DONE]``), or with errors,
cuts and stalls. Used by the adapter's tests and by turns run end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

KEY = "sk-test-SECRET-4f9c2b7e0d1a8c3f5e6b"


# --- the fake server ---------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


# A reply writes a whole response; it returns whether the connection stays open.
Reply = Callable[[asyncio.StreamWriter], Awaitable[bool]]


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: list[Reply] = []
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.base_url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def then(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(method, path, headers, json.loads(raw or b"null")))
                reply = self.replies.pop(0)
                keep = await reply(writer)
                await writer.drain()
                if not keep:
                    return
        finally:
            writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A FakeOpenAI listening (``fake.base_url``) until the block ends."""
    fake = FakeOpenAI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


# --- the wire format ---------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` exactly as OpenAI streams it with include_usage on."""
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
        "created": 1741570283, "model": "gpt-4o-2024-08-06", "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": None,
    }


def usage_chunk(prompt: int, completion: int, cached: int = 0,
                reasoning: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
        "created": 1741570283, "model": "gpt-4o-2024-08-06", "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8", "choices": [],
        "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        },
    }


def sse_body(*events: dict[str, Any] | str) -> bytes:
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        out.append(f"data: {data}\n\n")
    return "".join(out).encode()


TEXT_STREAM = (
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hello"}),
    chunk({"content": " wörld"}),
    chunk({"content": " 日本!"}),
    chunk({}, "stop"),
    usage_chunk(19, 10),
    "[DONE]",
)


def tool_args(call: int, piece: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": call, "function": {"arguments": piece}}]}


TOOL_STREAM = (
    chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk(tool_args(0, '{"lo')),
    chunk(tool_args(0, 'cation": "Par')),
    chunk(tool_args(0, 'is, France"}')),
    chunk({"tool_calls": [
        {"index": 1, "id": "call_ABsOmnS4rgyDc1NGMhVn5Vzu", "type": "function",
         "function": {"name": "get_time", "arguments": ""}}]}),
    chunk(tool_args(1, '{"tz": ')),
    chunk(tool_args(1, '"Europe/Paris", "24h": tr')),
    chunk(tool_args(1, "ue}")),
    chunk({}, "tool_calls"),
    usage_chunk(82, 51),
    "[DONE]",
)


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8",
                "Transfer-Encoding": "chunked", "Cache-Control": "no-cache",
                "openai-processing-ms": "157", "x-request-id": "req_4d1b2f0f7a6e"}


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def streams(*events: dict[str, Any] | str, piece: int | None = None) -> Reply:
    """A 200 streaming ``events``, one HTTP chunk per event, or in ``piece``-byte chunks that
    split lines and UTF-8 characters anywhere."""

    async def reply(writer: asyncio.StreamWriter) -> bool:
        writer.write(_head(200, "OK", _SSE_HEADERS))
        if piece is None:
            parts = [sse_body(event) for event in events]
        else:
            body = sse_body(*events)
            parts = [body[i:i + piece] for i in range(0, len(body), piece)]
        for part in parts:
            writer.write(_chunked(part))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        return True

    return reply


def _write_chunked_200(writer: asyncio.StreamWriter, events: tuple[dict[str, Any] | str, ...]
                       ) -> None:
    """A chunked 200's head, then one chunk per event."""
    writer.write(_head(200, "OK", _SSE_HEADERS))
    for event in events:
        writer.write(_chunked(sse_body(event)))


def cut_after(*events: dict[str, Any] | str) -> Reply:
    """A chunked 200 whose connection is closed after ``events``: the body never ends."""

    async def reply(writer: asyncio.StreamWriter) -> bool:
        _write_chunked_200(writer, events)
        writer.write(b"40\r\ndata: {\"id\":\"chatcmpl-B9MBs8Cj")  # half a chunk, then gone
        await writer.drain()
        return False

    return reply


def ends_after(*events: dict[str, Any] | str) -> Reply:
    """A 200 delimited by the connection's close (no length, not chunked): closing it after
    ``events`` is a clean end of the body, however short."""

    async def reply(writer: asyncio.StreamWriter) -> bool:
        headers = {k: v for k, v in _SSE_HEADERS.items() if k != "Transfer-Encoding"}
        writer.write(_head(200, "OK", {**headers, "Connection": "close"}))
        writer.write(sse_body(*events))
        return False

    return reply


def stalls_after(*events: dict[str, Any] | str) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> bool:
        _write_chunked_200(writer, events)
        await writer.drain()
        await asyncio.sleep(3600)  # cancelled when the server stops
        return False

    return reply


def status(code: int, reason: str, body: object | str,
           headers: dict[str, str] | None = None) -> Reply:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    kind = "text/html" if isinstance(body, str) else "application/json"

    async def reply(writer: asyncio.StreamWriter) -> bool:
        writer.write(_head(code, reason, {"Content-Type": kind,
                                          "Content-Length": str(len(data)),
                                          **(headers or {})}))
        writer.write(data)
        return True

    return reply
