"""The Anthropic Messages API, streamed: ``POST {base_url}/v1/messages`` with ``stream: true``.

The request is built from the ``ModelRequest``; the agent's ``model.params`` go into the body as
they are (temperature, top_p, stop_sequences, ...), under the fields this adapter owns (model,
messages, stream, tools, max_tokens). The reply is a stream of server-sent events:

    message_start        usage: input_tokens, cache_read/creation_input_tokens
    content_block_start  a text block, or a tool_use block (id, name)
    content_block_delta  text_delta -> TextDelta; input_json_delta -> pieces of a tool's input
    content_block_stop   a tool_use block is complete -> ToolCall with its parsed input
    message_delta        stop_reason, cumulative usage (output_tokens)
    message_stop         -> Finish(stop_reason, usage)
    error                ends the stream with a ModelError
    ping                 ignored, as are the blocks that are neither text nor tool_use
                         (thinking, server_tool_use, ...): they have no place in a ChatMessage

Every failure is a ``ModelError``; the API key never appears in one. Retryable: HTTP 408, 409,
429, 5xx and 529 (overloaded) with the ``retry-after`` the provider sent, unless it says
``x-should-retry: false``; an ``error`` event in the stream (but for errors in the request
itself); a connection that fails or a stream that ends before ``message_stop``; an event that
does not parse. Not retryable: the other 4xx, with the provider's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import msgspec

from engine.domain.session_state import ChatMessage
from engine.events import StopReason, Usage
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    UsageSoFar,
    retry_after,
)
from engine.runtime.adapters.sse import SSEParser

API_VERSION = "2023-06-01"
# The API requires max_tokens. Without one in the agent's params, replies stop at this many
# output tokens: every current Claude model allows at least this much.
DEFAULT_MAX_TOKENS = 4096
# After message_stop, how long to wait for the body's end, so the connection goes back to the
# pool instead of being closed.
_DRAIN_SECONDS = 1.0
_MAX_ERROR_CHARS = 500
# A tool call the model made that never got a result (its turn was interrupted before the
# client answered). The API refuses a tool_use without a tool_result right after it.
NO_RESULT = "No result: the turn ended before this tool returned."

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "end_turn",
    "model_context_window_exceeded": "max_tokens",
    # pause_turn (a server tool's loop paused), refusal, and any reason a later API version
    # adds end the message as end_turn: the text the model wrote is what there is.
}
_USAGE = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
}
# Error types that mean the request itself is wrong: sending it again cannot help.
_REQUEST_ERRORS = frozenset({"invalid_request_error", "authentication_error",
                             "permission_error", "not_found_error", "request_too_large"})


class AnthropicAdapter:
    """One adapter per provider endpoint; it owns one ``httpx.AsyncClient`` (connections are
    reused across calls) unless it is given one. ``timeout`` applies to the client it makes:
    connect, and the wait for each piece of the stream (the API pings an idle stream)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 60,
                 client: httpx.AsyncClient | None = None) -> None:
        self._url = base_url.rstrip("/") + "/v1/messages"
        if httpx.URL(self._url).scheme not in ("http", "https"):  # a bad setting fails at start
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._api_key = api_key
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(
            timeout=httpx.Timeout(timeout))

    def __repr__(self) -> str:  # never the key
        return f"AnthropicAdapter({self._url!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AnthropicAdapter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        content = msgspec.json.encode(request_body(request))
        finish: Finish | None = None
        try:
            async with self._client.stream("POST", self._url, content=content,
                                           headers=self._headers()) as response:
                if not response.is_success:
                    raise await self._http_error(response)
                message = _Message()
                events = _events(response.aiter_lines())
                async for data in events:
                    chunk = message.feed(data)
                    if isinstance(chunk, Finish):
                        finish = chunk
                        break
                    if chunk is not None:
                        yield chunk
                if finish is None:
                    raise ModelError("anthropic: the stream ended before message_stop",
                                     retryable=True)
                with contextlib.suppress(TimeoutError, httpx.HTTPError, ModelError):
                    async with asyncio.timeout(_DRAIN_SECONDS):
                        async for _ in events:
                            pass
        except httpx.HTTPError as exc:
            raise ModelError(self._scrub(f"anthropic: {type(exc).__name__}: {exc}"),
                             retryable=True) from exc
        except ModelError as exc:
            exc.message = self._scrub(exc.message)
            exc.args = (exc.message,)
            raise
        # Outside the response: the connection is back in the pool before the caller moves on.
        yield finish

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    async def _http_error(self, response: httpx.Response) -> ModelError:
        status = response.status_code
        kind, text = _error_detail(await response.aread())
        retryable = status in (408, 409, 429) or status >= 500
        should_retry = response.headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        message = f"anthropic: HTTP {status}" + (f" {kind}" if kind else "") + (
            f": {text}" if text else "")
        return ModelError(message, retryable=retryable,
                          retry_after=retry_after(response.headers) if retryable else None)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text


def request_body(request: ModelRequest) -> dict[str, Any]:
    body: dict[str, Any] = dict(request.model.params)
    body.update(model=request.model.name, max_tokens=max_tokens(request),
                messages=messages(request.messages), stream=True)
    if request.system:
        body["system"] = request.system
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "input_schema": tool.input_schema,
             **({"description": tool.description} if tool.description else {})}
            for tool in request.tools
        ]
    return body


def max_tokens(request: ModelRequest) -> Any:
    """``params["max_tokens"]`` or ``DEFAULT_MAX_TOKENS``, lowered to ``request.max_tokens``
    (the turn's token budget) when that is smaller. The budget alone is not sent: a budget above
    the model's output limit would make every call a 400."""
    configured = request.model.params.get("max_tokens", DEFAULT_MAX_TOKENS)
    if request.max_tokens is not None and isinstance(configured, int):
        return min(configured, request.max_tokens)
    return configured


def messages(conversation: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation as the API wants it: user and assistant alternating, each tool_use
    answered by a tool_result in the user message right after it.

    Results are placed after the call they answer, wherever they are in the conversation;
    the results of one message are one user message (and a user's text that follows goes
    after them in it); a call without a result gets an error result (``NO_RESULT``); a
    result without a call is left out. Consecutive messages of one role are merged; empty
    text is left out (the API refuses it)."""
    results = {m.tool_use_id: m for m in conversation if m.role == "tool" and m.tool_use_id}
    merged: list[tuple[str, list[dict[str, Any]]]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, blocks))

    for message in conversation:
        text = [{"type": "text", "text": message.text}] if message.text.strip() else []
        if message.role == "user":
            add("user", text)
        elif message.role == "assistant":
            add("assistant", text + [
                {"type": "tool_use", "id": call.tool_use_id, "name": call.name,
                 "input": call.input}
                for call in message.tool_calls
            ])
            add("user", [_tool_result(call.tool_use_id, results.pop(call.tool_use_id, None))
                         for call in message.tool_calls])
    return [
        {"role": role, "content": blocks[0]["text"]
         if role == "user" and len(blocks) == 1 and blocks[0]["type"] == "text" else blocks}
        for role, blocks in merged
    ]


def _tool_result(tool_use_id: str, result: ChatMessage | None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    text, is_error = (NO_RESULT, True) if result is None else (result.text, result.is_error)
    if text:
        block["content"] = text
    block["is_error"] = is_error
    return block


def _error_detail(raw: bytes) -> tuple[str, str]:
    """The error's type and message from ``{"type": "error", "error": {...}}``, or the body's
    start when it is something else (a proxy's HTML page)."""
    try:
        error = json.loads(raw)["error"]
        return str(error.get("type", "")), str(error.get("message", ""))[:_MAX_ERROR_CHARS]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", raw.decode("utf-8", "replace").strip()[:_MAX_ERROR_CHARS]


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events, each one's data as JSON; an event cut before its blank line is not
    dispatched (as the SSE spec says)."""
    parser = SSEParser()
    async for line in lines:
        sse = parser.feed(line)
        if sse is None:
            continue
        try:
            event = json.loads(sse.data)
        except ValueError as exc:
            raise ModelError(f"anthropic: an event that is not JSON ({sse.event or 'message'})",
                             retryable=True) from exc
        if not isinstance(event, dict):
            raise ModelError(f"anthropic: an event that is not an object ({sse.event})",
                             retryable=True)
        event.setdefault("type", sse.event)
        yield event


@dataclass
class _ToolBlock:
    tool_use_id: str
    name: str
    parts: list[str] = field(default_factory=list)


@dataclass
class _Message:
    """The events of one streamed message folded into chunks."""

    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: StopReason | None = None
    tools: dict[int, _ToolBlock] = field(default_factory=dict)  # open tool_use blocks by index
    unparsed: str | None = None  # a tool whose input is not a JSON object

    def feed(self, event: dict[str, Any]) -> Chunk | None:
        try:
            return self._feed(event)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"anthropic: a malformed {event.get('type')} event",
                             retryable=True) from exc

    def _feed(self, event: dict[str, Any]) -> Chunk | None:
        match event["type"]:
            case "message_start":
                self._take_usage(event["message"].get("usage"))
                return UsageSoFar(Usage(**self.usage))
            case "content_block_start":
                block = event["content_block"]
                if block["type"] == "tool_use":
                    self.tools[event["index"]] = _ToolBlock(block["id"], block["name"])
            case "content_block_delta":
                delta = event["delta"]
                if delta["type"] == "text_delta" and delta["text"]:
                    return TextDelta(delta["text"])
                tool = self.tools.get(event["index"])
                if delta["type"] == "input_json_delta" and tool is not None:
                    tool.parts.append(delta["partial_json"])
            case "content_block_stop":
                tool = self.tools.pop(event["index"], None)
                if tool is not None:
                    return self._tool_call(tool)
            case "message_delta":
                reason = event["delta"].get("stop_reason")
                if reason is not None:
                    self.stop_reason = _STOP_REASONS.get(reason, "end_turn")
                self._take_usage(event.get("usage"))
            case "message_stop":
                return self._finish()
            case "error":
                error = event.get("error") or {}
                kind = error.get("type", "error")
                raise ModelError(f"anthropic: {kind}: {error.get('message', '')}",
                                 retryable=kind not in _REQUEST_ERRORS)
            case _:
                pass  # ping, and whatever a later API version adds
        return None

    def _tool_call(self, tool: _ToolBlock) -> ToolCall | None:
        raw = "".join(tool.parts)
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            # Cut by max_tokens, the input is unfinished: message_stop decides.
            self.unparsed = tool.name
            return None
        return ToolCall(tool.tool_use_id, tool.name, parsed)

    def _finish(self) -> Finish:
        if self.stop_reason is None:
            raise ModelError("anthropic: message_stop without a stop_reason", retryable=True)
        if self.unparsed is not None and self.stop_reason != "max_tokens":
            raise ModelError(f"anthropic: the input of a {self.unparsed!r} call is not a "
                             "JSON object", retryable=True)
        # A call cut short by max_tokens is left out: the reply stops at max_tokens.
        return Finish(self.stop_reason, Usage(**self.usage))

    def _take_usage(self, usage: dict[str, Any] | None) -> None:
        """From message_start, then message_delta, whose counts are cumulative."""
        for theirs, ours in _USAGE.items():
            value = (usage or {}).get(theirs)
            if isinstance(value, int) and not isinstance(value, bool):
                self.usage[ours] = value
