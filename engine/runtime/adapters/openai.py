"""The adapter for any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, ...):
``POST {base_url}/chat/completions`` with ``stream: true`` and
``stream_options: {include_usage: true}``, read as server-sent events.

The request:

- ``messages``: the system prompt (if any), then the conversation. An assistant message's tool
  calls go out as ``tool_calls`` (``arguments`` is the input as a JSON string), each answered by
  a ``role: tool`` message right after it, as the API requires: a result is placed after its
  call wherever it is in the conversation (the runtime records the error result of a refused
  call before the message that made it ends), a call without a result (its turn ended first)
  gets an error result, and a result without a call is left out. Chat Completions has no error
  flag on tool results, so a result with ``is_error`` is sent as ``"Error: " + text``.
- ``tools``: each ToolSpec as ``{type: function, function: {name, description, parameters}}``;
  the key is left out when the agent has no tools (OpenAI refuses an empty list).
- ``model.params`` are merged into the body as they are (temperature, top_p, tool_choice,
  reasoning_effort, ...), except the keys the adapter owns: ``model``, ``messages``, ``tools``
  and ``stream`` are ignored in params, and ``stream_options`` is kept with ``include_usage``
  forced on. The request's ``max_tokens`` (the turn's token budget) caps the limit params set
  (``max_tokens``, or ``max_completion_tokens``, which OpenAI's reasoning models require); it is
  not sent alone: a budget above the model's output limit (16,384 for gpt-4o-mini) or its
  context (vLLM) would make every call a 400. Without a limit in params, the server's default
  applies.

The reply: ``content`` deltas stream out as TextDelta (a ``refusal`` too: it is what the model
said). Reasoning deltas some servers send (``reasoning_content``, ``reasoning``) are not text and
are dropped; their tokens still count in usage. Tool call deltas accumulate by ``index`` (id and
name first, arguments in pieces; a server that omits ``index`` is followed by id) and are emitted
as ToolCalls, in index order, once the reply is complete, just before the Finish. Only choice 0
is read. Usage is the last ``usage`` object seen (the chunk with empty ``choices`` that
``include_usage`` adds; vLLM may repeat it, cumulatively, on every chunk): ``prompt_tokens`` ->
input_tokens, ``completion_tokens`` -> output_tokens, ``prompt_tokens_details.cached_tokens`` ->
cache_read_tokens, ``completion_tokens_details.reasoning_tokens`` -> reasoning_tokens, as the
provider reports them: OpenAI's prompt_tokens already include the cached ones and its
completion_tokens the reasoning ones. The API reports no cache writes (cache_write_tokens 0).
A server that ignores ``include_usage`` gives a Finish with zero usage.

Stop reasons: ``stop`` -> end_turn, ``tool_calls`` (and the legacy ``function_call``) ->
tool_use, ``length`` -> max_tokens, anything else (``content_filter``, ...) -> end_turn. What was
delivered wins over the label: a reply with tool calls is tool_use even if the server says
``stop`` (some local servers do), and one without any is never tool_use (the runtime would call
the model again waiting for results that cannot come).

A reply is complete once a ``finish_reason`` arrived and the stream then ended: ``data: [DONE]``
or a clean end of the body. What follows ``[DONE]`` is read (for up to a second) so the
connection goes back to the pool. Anything else is a ModelError:

- HTTP 408, 409, 429 and 5xx: retryable (what the official OpenAI SDK retries), with
  ``retry_after`` from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).
- Any other non-2xx status: not retryable, with the provider's message (``{"error": {"message"}}``
  or the other shapes compatible servers use), truncated.
- A connection that fails, times out or breaks mid-body, a stream that ends without a
  ``finish_reason`` (cut halfway), malformed JSON in a ``data:`` line, a tool call without a
  name: retryable: the runtime asks again.
- An error object inside the stream (``data: {"error": ...}``): retryable unless it carries a
  4xx status code (other than 408/409/429) or ``type: invalid_request_error``.

Tool arguments that are not a JSON object (invalid JSON, usually a model's slip or a reply cut by
``length``) raise nothing: the ToolCall is emitted with ``input = {"_raw": <the arguments text>}``.
Nothing the model said is lost, the runtime's JSON Schema check of the input answers the model
with an error result when the schema requires properties or forbids extra ones, and the runtime
can recognise ``_raw`` to answer such calls explicitly. Empty arguments (``""``, which some
servers send for a tool without parameters) are ``{}``. A tool call without an id gets one
(``call_<ULID>``).

The API key goes only into the ``Authorization: Bearer`` header of each request (none is sent when
there is no key, as Ollama and vLLM allow). It is never put in a message: any occurrence in text
that could end up in an error (a provider that echoes it) is replaced by ``[redacted]``, and
errors are raised ``from None`` so no HTTP library exception (whose frames hold the raw headers)
rides along in a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from engine.domain.session_state import ChatMessage
from engine.events import StopReason, ToolSpec, Usage
from engine.ids import new_id
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    retry_after,
)
from engine.runtime.adapters.sse import SSEParser

_RESERVED_PARAMS = frozenset({"model", "messages", "tools", "stream", "stream_options"})
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
}
# The result sent for a tool call that never got one (its turn ended before the client or the
# tool answered): the API refuses a call that no tool message answers.
NO_RESULT = "the turn ended before this tool returned a result"
_DRAIN_SECONDS = 1.0  # how long the rest of a body may take to come after [DONE]
_DETAIL_LIMIT = 500  # characters of a provider's error message kept in a ModelError

_encode = msgspec.json.Encoder().encode


class OpenAIAdapter:
    """Streams replies from ``{base_url}/chat/completions``. One ``httpx.AsyncClient`` serves
    every call (its connection pool is shared by all the sessions a worker runs); pass ``client``
    to supply it (it is then the caller's to close), otherwise ``aclose()`` closes the adapter's
    own. ``timeout`` (seconds) bounds connecting, and every wait for the next bytes of a reply."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 60,
                 client: httpx.AsyncClient | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http(s) URL, like https://api.openai.com/v1")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key or None
        self._timeout = httpx.Timeout(timeout)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)

    def __repr__(self) -> str:  # never the key
        return f"OpenAIAdapter({self._url!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        reply = _Reply()
        events = SSEParser()
        try:
            async with self._client.stream(
                "POST", self._url, content=_encode(request_body(request)),
                headers=self._headers(), timeout=self._timeout,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._status_error(response)
                lines = response.aiter_lines()
                async for line in lines:
                    event = events.feed(line)
                    if event is not None:
                        for chunk in self._take(reply, event.data):
                            yield chunk
                        if reply.done:
                            break
                else:
                    event = events.flush()  # the body ended without the blank line
                    if event is not None:
                        for chunk in self._take(reply, event.data):
                            yield chunk
                if reply.done:
                    await _drain(lines)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if reply.finish_reason is None:
            raise ModelError("the model's stream ended before a finish_reason (cut short)",
                             retryable=True)
        for call in reply.tool_calls():
            yield call
        yield reply.finish()

    # --- helpers --------------------------------------------------------------------------------

    def _headers(self) -> httpx.Headers:
        # httpx.Headers masks Authorization in its repr.
        headers = httpx.Headers({"Accept": "text/event-stream",
                                 "Content-Type": "application/json"})
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text

    def _take(self, reply: _Reply, data: str) -> list[Chunk]:
        if data.strip() == "[DONE]":
            reply.done = True
            return []
        try:
            payload = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise ModelError(f"malformed JSON in the model's stream: {self._snippet(data)}",
                             retryable=True) from None
        if not isinstance(payload, dict):
            raise ModelError(f"unexpected data in the model's stream: {self._snippet(data)}",
                             retryable=True)
        if payload.get("error") is not None or payload.get("object") == "error":
            raise self._stream_error(payload)
        return reply.take(payload)

    def _snippet(self, text: str) -> str:
        text = self._redact(text)
        return text if len(text) <= 200 else text[:200] + "..."

    def _status_error(self, response: httpx.Response) -> ModelError:
        status = response.status_code
        detail = self._redact(_error_detail(response))
        if len(detail) > _DETAIL_LIMIT:
            detail = detail[:_DETAIL_LIMIT] + "..."
        message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        if status in _RETRYABLE_STATUS or status >= 500:
            return ModelError(message, retryable=True,
                              retry_after=retry_after(response.headers))
        return ModelError(message, retryable=False)

    def _stream_error(self, payload: dict[str, Any]) -> ModelError:
        error = payload.get("error")
        if not isinstance(error, dict):
            error = payload if isinstance(payload.get("message"), str) else {"message": error}
        message = error.get("message")
        text = self._redact(str(message) if message is not None else "unknown error")
        if len(text) > _DETAIL_LIMIT:
            text = text[:_DETAIL_LIMIT] + "..."
        code = error.get("code")
        refused = error.get("type") == "invalid_request_error" or (
            isinstance(code, int) and 400 <= code < 500 and code not in _RETRYABLE_STATUS)
        return ModelError(f"error in the model's stream: {text}", retryable=not refused)

    def _transport_error(self, exc: httpx.HTTPError) -> ModelError:
        detail = self._redact(str(exc)) or "no detail"
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ModelError(f"cannot call the model: {detail}", retryable=False)
        if isinstance(exc, httpx.TimeoutException):
            return ModelError(f"the model timed out ({type(exc).__name__})", retryable=True)
        return ModelError(f"the connection to the model failed ({type(exc).__name__}: {detail})",
                          retryable=True)


# --- the request -----------------------------------------------------------------------------


def request_body(request: ModelRequest) -> dict[str, Any]:
    """The JSON body of a Chat Completions call for ``request``."""
    params = request.model.params
    body: dict[str, Any] = {"model": request.model.name,
                            "messages": _messages(request.system, request.messages)}
    body.update((k, v) for k, v in params.items() if k not in _RESERVED_PARAMS)
    if request.tools:
        body["tools"] = [_tool(spec) for spec in request.tools]
    for limit in ("max_completion_tokens", "max_tokens"):
        configured = params.get(limit)
        if (request.max_tokens is not None and isinstance(configured, int)
                and not isinstance(configured, bool)):
            body[limit] = min(configured, request.max_tokens)
    options = params.get("stream_options")
    body["stream"] = True
    body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                              "include_usage": True}
    return body


def _messages(system: str | None, conversation: list[ChatMessage]) -> list[dict[str, Any]]:
    results = {m.tool_use_id: m for m in conversation if m.role == "tool" and m.tool_use_id}
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for message in conversation:
        if message.role == "user":
            messages.append({"role": "user", "content": message.text})
        elif message.role == "assistant" and not message.tool_calls:
            messages.append({"role": "assistant", "content": message.text})
        elif message.role == "assistant":
            messages.append({
                "role": "assistant",
                "content": message.text or None,
                "tool_calls": [
                    {"id": use.tool_use_id, "type": "function",
                     "function": {"name": use.name, "arguments": _encode(use.input).decode()}}
                    for use in message.tool_calls
                ],
            })
            for use in message.tool_calls:
                result = results.pop(use.tool_use_id, None)
                text, is_error = (NO_RESULT, True) if result is None else (result.text,
                                                                           result.is_error)
                messages.append({"role": "tool", "tool_call_id": use.tool_use_id,
                                 "content": f"Error: {text}" if is_error else text})
        # A tool result went out after its call above, or has no call and is left out.
    return messages


def _tool(spec: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": spec.name, "parameters": spec.input_schema}
    if spec.description:
        function["description"] = spec.description
    return {"type": "function", "function": function}


# --- the reply -------------------------------------------------------------------------------


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    parsed: dict[str, Any] | None = None  # servers that send the arguments as an object


class _Reply:
    """A reply folded from its chunks."""

    def __init__(self) -> None:
        self.calls: dict[int, _PendingCall] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.done = False  # data: [DONE] seen

    def take(self, payload: dict[str, Any]) -> list[Chunk]:
        out: list[Chunk] = []
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = payload.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for key in ("content", "refusal"):
                    text = delta.get(key)
                    if isinstance(text, str) and text:
                        out.append(TextDelta(text))
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else []:
                    if isinstance(call, dict):
                        self._add_call(call)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        return out

    def _add_call(self, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        call_id = delta.get("id")
        if not isinstance(index, int) or isinstance(index, bool):
            # No index: a known id continues its call, a new one starts a call, and a delta
            # without an id continues the last call.
            same = [i for i, c in self.calls.items() if call_id and c.id == call_id]
            if same:
                index = same[0]
            elif call_id or not self.calls:
                index = max(self.calls, default=-1) + 1
            else:
                index = max(self.calls)
        call = self.calls.setdefault(index, _PendingCall())
        if isinstance(call_id, str) and call_id and call.id is None:
            call.id = call_id
        function = delta.get("function")
        if not isinstance(function, dict):
            return
        name = function.get("name")
        if isinstance(name, str) and name and name != call.name:
            call.name += name  # a name sent in pieces; a repeated whole name is ignored
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)
        elif isinstance(arguments, dict):
            call.parsed = arguments

    def tool_calls(self) -> list[ToolCall]:
        out: list[ToolCall] = []
        for index in sorted(self.calls):
            call = self.calls[index]
            if not call.name:
                raise ModelError("the model sent a tool call without a name", retryable=True)
            out.append(ToolCall(call.id or new_id("call"), call.name, _arguments(call)))
        return out

    def finish(self) -> Finish:
        reason = _STOP_REASONS.get(self.finish_reason or "", "end_turn")
        if self.calls:
            reason = "tool_use"
        elif reason == "tool_use":
            reason = "end_turn"
        prompt = _details(self.usage, "prompt_tokens_details")
        completion = _details(self.usage, "completion_tokens_details")
        cached = _count(prompt.get("cached_tokens"))
        # OpenAI counts cached tokens in prompt_tokens; Usage keeps them apart (as Anthropic
        # does), so input + cache read is every prompt token and each is priced once.
        return Finish(reason, Usage(
            input_tokens=max(_count(self.usage.get("prompt_tokens")) - cached, 0),
            output_tokens=_count(self.usage.get("completion_tokens")),
            cache_read_tokens=cached,
            reasoning_tokens=_count(completion.get("reasoning_tokens")),
        ))


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` (the end of the body, at once from a well-behaved server)
    so the connection goes back to the pool; a server that keeps it open gets a second, then
    the connection is closed instead. The reply is complete either way."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in lines:
                pass


def _arguments(call: _PendingCall) -> dict[str, Any]:
    if call.parsed is not None:
        return call.parsed
    raw = "".join(call.arguments)
    if not raw.strip():
        return {}
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


def _details(usage: dict[str, Any], key: str) -> dict[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, int(value))


def _error_detail(response: httpx.Response) -> str:
    """The provider's own words: ``{"error": {"message"}}`` (OpenAI), ``{"error": "..."}``
    (Ollama), ``{"message": ...}`` or ``{"detail": ...}`` (vLLM, proxies), else the body."""
    try:
        payload = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.text.strip()
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])
        for value in (error, payload.get("message"), payload.get("detail")):
            if isinstance(value, str) and value:
                return value
    return response.text.strip()
