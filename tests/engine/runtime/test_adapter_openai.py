"""The OpenAI-compatible adapter against a fake Chat Completions server on a real socket: a raw
asyncio HTTP/1.1 server on 127.0.0.1 that records each request and answers with the exact wire
format OpenAI streams (``data:`` chunks, the usage chunk with empty ``choices``,
``data: [DONE]``), or with errors, cuts and stalls. No mocks of httpx."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import pytest

from engine.domain.session_state import ChatMessage
from engine.events import ModelConfig, ToolSpec, ToolUse, Usage
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
)
from engine.runtime.adapters.openai import OpenAIAdapter
from tests.helpers_adapters import chunks_of, failure_of
from tests.helpers_openai import (
    KEY,
    TEXT_STREAM,
    TOOL_STREAM,
    FakeOpenAI,
    chunk,
    cut_after,
    ends_after,
    fake_openai,
    stalls_after,
    status,
    streams,
    tool_args,
    usage_chunk,
)

# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as fake:
        yield fake


@pytest.fixture
async def adapter(server: FakeOpenAI) -> AsyncIterator[OpenAIAdapter]:
    adapter = OpenAIAdapter(server.base_url, KEY, timeout=5)
    yield adapter
    await adapter.aclose()


WEATHER = ToolSpec(name="get_weather", description="The weather somewhere.",
                   input_schema={"type": "object", "properties": {"location": {"type": "string"}},
                                 "required": ["location"]})
TIME = ToolSpec(name="get_time", input_schema={"type": "object"})


def make_request(*, params: dict[str, Any] | None = None, max_tokens: int | None = None,
                 messages: list[ChatMessage] | None = None, system: str | None = "Be brief.",
                 tools: list[ToolSpec] | None = None) -> ModelRequest:
    return ModelRequest(
        model=ModelConfig(adapter="openai", name="gpt-4o-mini", params=params or {}),
        system=system,
        messages=messages if messages is not None else [ChatMessage("user", "Hi")],
        tools=tools if tools is not None else [WEATHER, TIME],
        step=0,
        max_tokens=max_tokens,
    )


async def collect(adapter: OpenAIAdapter, request: ModelRequest | None = None) -> list[Chunk]:
    return await chunks_of(adapter, request or make_request())


async def failure(adapter: OpenAIAdapter, request: ModelRequest | None = None) -> ModelError:
    """The ModelError the call raises; the key is nowhere in it, nor in its traceback."""
    return await failure_of(adapter, request or make_request(), KEY)


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


# --- streaming ---------------------------------------------------------------------------------


async def test_text_streams_as_deltas_then_one_finish(server: FakeOpenAI,
                                                      adapter: OpenAIAdapter) -> None:
    server.then(streams(*TEXT_STREAM))
    chunks = await collect(adapter)
    assert chunks == [TextDelta("Hello"), TextDelta(" wörld"), TextDelta(" 日本!"),
                      Finish("end_turn", Usage(input_tokens=19, output_tokens=10))]


async def test_lines_and_characters_split_across_reads(server: FakeOpenAI,
                                                       adapter: OpenAIAdapter) -> None:
    server.then(streams(*TEXT_STREAM, piece=7))
    chunks = await collect(adapter)
    assert text_of(chunks) == "Hello wörld 日本!"
    assert chunks[-1] == Finish("end_turn", Usage(input_tokens=19, output_tokens=10))


async def test_two_parallel_tool_calls_split_over_chunks(server: FakeOpenAI,
                                                        adapter: OpenAIAdapter) -> None:
    server.then(streams(*TOOL_STREAM))
    chunks = await collect(adapter)
    assert chunks == [
        ToolCall("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Paris, France"}),
        ToolCall("call_ABsOmnS4rgyDc1NGMhVn5Vzu", "get_time", {"tz": "Europe/Paris", "24h": True}),
        Finish("tool_use", Usage(input_tokens=82, output_tokens=51)),
    ]


async def test_text_then_a_tool_call(server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
    server.then(streams(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me check."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk(tool_args(0, '{"location": "Oslo"}')),
        chunk({}, "tool_calls"), usage_chunk(5, 6), "[DONE]",
    ))
    assert await collect(adapter) == [
        TextDelta("Let me check."), ToolCall("call_1", "get_weather", {"location": "Oslo"}),
        Finish("tool_use", Usage(input_tokens=5, output_tokens=6))]


async def test_usage_maps_cached_and_reasoning_tokens(server: FakeOpenAI,
                                                      adapter: OpenAIAdapter) -> None:
    server.then(streams(chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop"),
                        usage_chunk(2048, 300, cached=1920, reasoning=256), "[DONE]"))
    chunks = await collect(adapter)
    assert chunks[-1] == Finish("end_turn", Usage(input_tokens=128, output_tokens=300,
                                                  cache_read_tokens=1920, reasoning_tokens=256,
                                                  cache_write_tokens=0))


async def test_length_is_max_tokens(server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
    server.then(streams(chunk({"content": "Once upon"}), chunk({}, "length"),
                        usage_chunk(3, 2), "[DONE]"))
    assert (await collect(adapter))[-1] == Finish("max_tokens", Usage(input_tokens=3,
                                                                      output_tokens=2))


async def test_a_server_without_usage_gives_zero_usage(server: FakeOpenAI,
                                                       adapter: OpenAIAdapter) -> None:
    server.then(streams(chunk({"content": "hi"}), chunk({}, "stop"), "[DONE]"))
    assert (await collect(adapter))[-1] == Finish("end_turn", Usage())


async def test_invalid_tool_arguments_pass_through_raw(server: FakeOpenAI,
                                                       adapter: OpenAIAdapter) -> None:
    server.then(streams(
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"loc'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                               "function": {"name": "get_time", "arguments": ""}}]}),
        chunk({}, "tool_calls"), usage_chunk(1, 1), "[DONE]",
    ))
    chunks = await collect(adapter)
    assert chunks[:2] == [ToolCall("call_1", "get_weather", {"_raw": '{"loc'}),
                          ToolCall("call_2", "get_time", {})]


async def test_ollama_style_whole_tool_call_without_index_and_stop(
    server: FakeOpenAI, adapter: OpenAIAdapter,
) -> None:
    # Some local servers send each call whole, without an index, and finish with "stop".
    server.then(streams(
        chunk({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location":"Rome"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, "stop"), usage_chunk(1, 1), "[DONE]",
    ))
    chunks = await collect(adapter)
    assert chunks[:2] == [ToolCall("call_a", "get_weather", {"location": "Rome"}),
                          ToolCall("call_b", "get_time", {})]
    assert isinstance(chunks[-1], Finish) and chunks[-1].stop_reason == "tool_use"


async def test_one_client_and_connection_for_many_calls(server: FakeOpenAI,
                                                        adapter: OpenAIAdapter) -> None:
    server.then(streams(*TEXT_STREAM), streams(*TOOL_STREAM), streams(*TEXT_STREAM))
    for _ in range(3):
        await collect(adapter)
    assert len(server.requests) == 3
    assert server.connections == 1  # kept alive: the body is read to its end after [DONE]


async def test_a_supplied_client_is_used_and_left_open(server: FakeOpenAI) -> None:
    async with httpx.AsyncClient() as client:
        adapter = OpenAIAdapter(server.base_url + "/", KEY, client=client)
        server.then(streams(*TEXT_STREAM))
        assert text_of(await collect(adapter)) == "Hello wörld 日本!"
        await adapter.aclose()
        assert not client.is_closed
    assert server.requests[0].path == "/v1/chat/completions"


# --- the request -------------------------------------------------------------------------------


async def test_the_request_the_server_receives(server: FakeOpenAI,
                                               adapter: OpenAIAdapter) -> None:
    server.then(streams(*TEXT_STREAM))
    use = ToolUse(turn_id="turn_1", message_id="msg_1", tool_use_id="call_w",
                  name="get_weather", input={"location": "Paris"}, executor="client")
    use2 = ToolUse(turn_id="turn_1", message_id="msg_1", tool_use_id="call_t",
                   name="get_time", input={}, executor="client")
    conversation = [
        ChatMessage("user", "Weather and time in Paris?"),
        ChatMessage("assistant", "", tool_calls=[use, use2]),
        ChatMessage("tool", "18°C, sunny", tool_use_id="call_w"),
        ChatMessage("tool", "clock unavailable", tool_use_id="call_t", is_error=True),
        ChatMessage("assistant", "It is 18°C and sunny."),
        ChatMessage("user", "Thanks"),
    ]
    request = make_request(
        params={"temperature": 0.2, "top_p": 0.9, "tool_choice": "auto", "max_tokens": 1000,
                "model": "not-this", "stream": False},
        max_tokens=256, messages=conversation)
    await collect(adapter, request)

    [received] = server.requests
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["accept"] == "text/event-stream"
    assert received.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_w", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
                {"id": "call_t", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_w", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_t", "content": "Error: clock unavailable"},
            {"role": "assistant", "content": "It is 18°C and sunny."},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather", "description": "The weather somewhere.",
                "parameters": {"type": "object",
                               "properties": {"location": {"type": "string"}},
                               "required": ["location"]}}},
            {"type": "function", "function": {"name": "get_time",
                                              "parameters": {"type": "object"}}},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "tool_choice": "auto",
        "max_tokens": 256,  # the params' 1000, capped by the turn's budget
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_every_tool_call_is_answered_right_after_it(server: FakeOpenAI,
                                                          adapter: OpenAIAdapter) -> None:
    # As the log folds: the runtime's error result for a refused call comes before the
    # message that made the call ends; an interrupted turn leaves a call without a result.
    def use(tool_use_id: str) -> ToolUse:
        return ToolUse(turn_id="turn_1", message_id="msg_1", tool_use_id=tool_use_id,
                       name="get_time", input={}, executor="client")

    server.then(streams(*TEXT_STREAM))
    await collect(adapter, make_request(system=None, messages=[
        ChatMessage("user", "Time?"),
        ChatMessage("tool", "no tool named 'nope'", tool_use_id="call_bad", is_error=True),
        ChatMessage("assistant", "Checking.", tool_calls=[use("call_bad"), use("call_lost")]),
        ChatMessage("tool", "stray", tool_use_id="call_unknown"),
        ChatMessage("user", "Never mind."),
    ]))
    messages = server.requests[0].body["messages"]
    assert [(m["role"], m.get("tool_call_id"), m["content"]) for m in messages] == [
        ("user", None, "Time?"),
        ("assistant", None, "Checking."),
        ("tool", "call_bad", "Error: no tool named 'nope'"),
        ("tool", "call_lost", "Error: the turn ended before this tool returned a result"),
        ("user", None, "Never mind."),
    ]


@pytest.mark.parametrize(("params", "budget", "expected"), [
    ({"max_tokens": 64}, 256, {"max_tokens": 64}),
    ({"max_tokens": 64}, None, {"max_tokens": 64}),
    ({"max_completion_tokens": 900}, 256, {"max_completion_tokens": 256}),
    ({}, 100_000, {}),  # a budget alone is not a limit: above the model's, every call is a 400
])
async def test_the_budget_caps_the_token_limit_of_params(
    server: FakeOpenAI, adapter: OpenAIAdapter, params: dict[str, Any], budget: int | None,
    expected: dict[str, Any],
) -> None:
    server.then(streams(*TEXT_STREAM))
    await collect(adapter, make_request(params=params, max_tokens=budget))
    body = server.requests[0].body
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == expected


async def test_without_tools_system_or_key(server: FakeOpenAI) -> None:
    adapter = OpenAIAdapter(server.base_url, None)
    server.then(streams(*TEXT_STREAM))
    await collect(adapter, make_request(system=None, tools=[],
                                        params={"stream_options": {"foo": 1}}))
    await adapter.aclose()
    received = server.requests[0]
    assert "authorization" not in received.headers
    assert "tools" not in received.body and "max_tokens" not in received.body
    assert received.body["messages"] == [{"role": "user", "content": "Hi"}]
    assert received.body["stream_options"] == {"foo": 1, "include_usage": True}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
    ({}, None),
])
async def test_429_is_retryable_with_retry_after(server: FakeOpenAI, adapter: OpenAIAdapter,
                                                 headers: dict[str, str],
                                                 expected: float | None) -> None:
    server.then(status(429, "Too Many Requests", {"error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min.",
        "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}, headers))
    error = await failure(adapter)
    assert error.retryable
    assert error.retry_after == expected
    assert "Rate limit reached" in error.message and "429" in error.message


async def test_retry_after_as_an_http_date(server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.then(status(429, "Too Many Requests", {"error": {"message": "slow down"}},
                       {"Retry-After": when}))
    error = await failure(adapter)
    assert error.retryable and error.retry_after is not None
    assert 25 <= error.retry_after <= 31


@pytest.mark.parametrize(("code", "reason"), [(500, "Internal Server Error"),
                                              (503, "Service Unavailable")])
async def test_5xx_is_retryable(server: FakeOpenAI, adapter: OpenAIAdapter, code: int,
                                reason: str) -> None:
    server.then(status(code, reason, "<html><body>upstream overloaded</body></html>"))
    error = await failure(adapter)
    assert error.retryable and error.retry_after is None
    assert str(code) in error.message


async def test_400_is_not_retryable_and_says_why(server: FakeOpenAI,
                                                 adapter: OpenAIAdapter) -> None:
    message = ("Invalid 'messages[1].content': string too long. Expected a string with maximum "
               "length 1048576, but got a string with length 2000000 instead.")
    server.then(status(400, "Bad Request", {"error": {
        "message": message, "type": "invalid_request_error", "param": "messages[1].content",
        "code": "string_above_max_length"}}))
    error = await failure(adapter)
    assert not error.retryable
    assert message in error.message


async def test_vllm_style_error_body(server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
    server.then(status(404, "Not Found", {
        "object": "error", "message": "The model `gpt-4o-mini` does not exist.",
        "type": "NotFoundError", "param": None, "code": 404}))
    error = await failure(adapter)
    assert not error.retryable
    assert "does not exist" in error.message


async def test_the_key_never_appears_in_errors(server: FakeOpenAI,
                                               adapter: OpenAIAdapter) -> None:
    # A provider (or a proxy) that echoes the key back in its error message.
    server.then(status(401, "Unauthorized", {"error": {
        "message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    error = await failure(adapter)  # asserts the key is nowhere in it
    assert not error.retryable
    assert "Incorrect API key provided" in error.message and "[redacted]" in error.message
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_a_stream_cut_halfway_is_retryable(server: FakeOpenAI,
                                                 adapter: OpenAIAdapter) -> None:
    server.then(cut_after(*TOOL_STREAM[:3]))
    error = await failure(adapter)
    assert error.retryable


@pytest.mark.parametrize("events", [
    TEXT_STREAM[:3],  # the connection closes cleanly, mid-reply
    (*TEXT_STREAM[:3], "[DONE]"),  # [DONE] without a finish_reason
])
async def test_a_stream_ending_without_finish_reason_is_retryable(
    server: FakeOpenAI, adapter: OpenAIAdapter, events: tuple[dict[str, Any] | str, ...],
) -> None:
    server.then(ends_after(*events))
    error = await failure(adapter)
    assert error.retryable
    assert "finish_reason" in error.message


async def test_a_clean_end_after_finish_reason_completes(server: FakeOpenAI,
                                                         adapter: OpenAIAdapter) -> None:
    server.then(ends_after(*TEXT_STREAM[:-1]))  # everything but [DONE]
    assert (await collect(adapter))[-1] == Finish("end_turn", Usage(input_tokens=19,
                                                                    output_tokens=10))


async def test_malformed_json_in_the_stream_is_retryable(server: FakeOpenAI,
                                                        adapter: OpenAIAdapter) -> None:
    server.then(streams(chunk({"content": "Hel"}), '{"id":"chatcmpl-1","choices":[{"index"',
                        chunk({}, "stop"), "[DONE]"))
    error = await failure(adapter)
    assert error.retryable
    assert "malformed JSON" in error.message


async def test_an_error_inside_the_stream(server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
    server.then(
        streams(chunk({"content": "Hel"}), {"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": None, "code": None}}),
        streams(chunk({"content": "Hel"}), {"error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "BadRequestError", "param": None, "code": 400}}),
    )
    first = await failure(adapter)
    assert first.retryable and "The server had an error" in first.message
    second = await failure(adapter)
    assert not second.retryable and "maximum context length" in second.message


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = OpenAIAdapter(f"http://127.0.0.1:{port}/v1", KEY, timeout=2)
    error = await failure(adapter)
    await adapter.aclose()
    assert error.retryable


async def test_a_stalled_stream_times_out_retryably(server: FakeOpenAI) -> None:
    adapter = OpenAIAdapter(server.base_url, KEY, timeout=0.3)
    server.then(stalls_after(*TEXT_STREAM[:2]))
    started = time.monotonic()
    error = await failure(adapter)
    await adapter.aclose()
    assert error.retryable and "timed out" in error.message
    assert time.monotonic() - started < 10  # not a hang: the 0.3 s timeout, on a busy box


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIAdapter("localhost:11434/v1", KEY)


async def test_a_consumer_that_stops_early_frees_the_call(server: FakeOpenAI,
                                                          adapter: OpenAIAdapter) -> None:
    server.then(stalls_after(*TEXT_STREAM[:2]), streams(*TEXT_STREAM))
    replies = adapter.stream(make_request())
    assert isinstance(replies, AsyncGenerator)
    async with asyncio.timeout(30):
        assert await anext(replies) == TextDelta("Hello")
        await replies.aclose()  # e.g. the turn was interrupted
    assert text_of(await collect(adapter)) == "Hello wörld 日本!"


async def test_a_body_left_open_after_done_still_completes(server: FakeOpenAI,
                                                           adapter: OpenAIAdapter) -> None:
    server.then(stalls_after(*TEXT_STREAM), streams(*TEXT_STREAM))
    started = time.monotonic()
    chunks = await collect(adapter)
    assert chunks[-1] == Finish("end_turn", Usage(input_tokens=19, output_tokens=10))
    assert time.monotonic() - started < 10  # the drain gives up after a second (not a hang)
    assert text_of(await collect(adapter)) == "Hello wörld 日本!"  # on a new connection
    assert server.connections == 2
