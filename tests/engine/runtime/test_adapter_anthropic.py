"""The Anthropic adapter against a fake Messages API on a real socket (uvicorn on 127.0.0.1):
the server streams the bytes Anthropic sends (``event: ...`` / ``data: {...}`` frames, pings,
tool input in pieces) and records what it received; it can also fail, or hang up mid-stream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from engine.domain.session_state import ChatMessage
from engine.events import ModelConfig, ToolSpec, ToolUse, Usage
from engine.runtime.adapters.anthropic import DEFAULT_MAX_TOKENS, NO_RESULT, AnthropicAdapter
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    UsageSoFar,
)
from tests.helpers_adapters import chunks_of, failure_of
from tests.helpers_anthropic import (
    API_KEY,
    JSON,
    PING,
    FakeAnthropic,
    Reply,
    error_body,
    event,
    message_end,
    message_start,
    serving,
    text_block,
    tool_block,
)

# One server for the module (uvicorn takes a tenth of a second to stop), so one event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running_server() -> AsyncIterator[FakeAnthropic]:
    async with serving(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture
def server(running_server: FakeAnthropic) -> FakeAnthropic:
    running_server.replies.clear()
    running_server.received.clear()
    return running_server


@pytest_asyncio.fixture(loop_scope="module")
async def adapter(server: FakeAnthropic) -> AsyncIterator[AnthropicAdapter]:
    async with AnthropicAdapter(server.url + "/", API_KEY, timeout=10) as made:
        yield made


def request(messages: list[ChatMessage] | None = None, *, params: dict[str, Any] | None = None,
            tools: list[ToolSpec] | None = None, system: str | None = None,
            max_tokens: int | None = None) -> ModelRequest:
    return ModelRequest(
        ModelConfig(adapter="anthropic", name="claude-sonnet-4-5", params=params or {}),
        system, messages or [ChatMessage("user", "Hello")], tools or [], step=0,
        max_tokens=max_tokens)


# What message_start reports (its usage): what a call cut short is charged at least.
STARTED = UsageSoFar(Usage(input_tokens=25, output_tokens=1))


async def collect(adapter: AnthropicAdapter, req: ModelRequest | None = None) -> list[Chunk]:
    return await chunks_of(adapter, req or request())


async def failure(adapter: AnthropicAdapter, req: ModelRequest | None = None) -> ModelError:
    """The ModelError the call raises; the key is nowhere in it."""
    return await failure_of(adapter, req or request(), API_KEY)


async def test_text_streams_as_deltas_then_one_finish(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(), *text_block(0, "Hello", "!", " How can", " I help?")[:2], PING,
        *text_block(0, "Hello", "!", " How can", " I help?")[2:], *message_end()]))
    chunks = await collect(adapter)
    assert chunks == [STARTED, TextDelta("Hello"), TextDelta("!"), TextDelta(" How can"),
                      TextDelta(" I help?"), Finish("end_turn", Usage(input_tokens=25,
                                                                        output_tokens=15))]


async def test_a_tool_call_is_built_from_pieces_of_json_after_the_text(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(),
        *text_block(0, "Let me check", " the weather."),
        *tool_block(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather",
                    "", '{"location":', ' "San Fra', 'ncisco, CA"', ', "unit": "fah',
                    'renheit", "days": [1, ', "2]}"),
        PING,
        *tool_block(2, "toolu_02", "get_time", ""),  # no input at all: {}
        *message_end("tool_use", 89)]))
    chunks = await collect(adapter)
    assert chunks == [
        STARTED, TextDelta("Let me check"), TextDelta(" the weather."),
        ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather",
                 {"location": "San Francisco, CA", "unit": "fahrenheit", "days": [1, 2]}),
        ToolCall("toolu_02", "get_time", {}),
        Finish("tool_use", Usage(input_tokens=25, output_tokens=89)),
    ]


async def test_usage_keeps_cache_reads_and_writes(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(input_tokens=12, cache_read=2048, cache_write=512),
        *text_block(0, "Hi"), *message_end(output_tokens=7)]))
    finish = (await collect(adapter))[-1]
    assert finish == Finish("end_turn", Usage(input_tokens=12, output_tokens=7,
                                              cache_read_tokens=2048, cache_write_tokens=512))


@pytest.mark.parametrize(("theirs", "ours"), [
    ("end_turn", "end_turn"), ("tool_use", "tool_use"), ("max_tokens", "max_tokens"),
    ("stop_sequence", "end_turn"), ("refusal", "end_turn")])
async def test_stop_reasons(server: FakeAnthropic, adapter: AnthropicAdapter,
                            theirs: str, ours: str) -> None:
    server.replies.append(Reply(body=[message_start(), *text_block(0, "x"),
                                      *message_end(theirs)]))
    finish = (await collect(adapter))[-1]
    assert isinstance(finish, Finish) and finish.stop_reason == ours


async def test_thinking_and_server_tool_blocks_are_skipped(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    def delta(index: int, body: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": index,
                                             "delta": body})

    def block(index: int, body: dict[str, Any]) -> bytes:
        return event("content_block_start", {"type": "content_block_start", "index": index,
                                             "content_block": body})

    def stop(index: int) -> bytes:
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    server.replies.append(Reply(body=[
        message_start(),
        block(0, {"type": "thinking", "thinking": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "The user wants"}),
        delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}), stop(0),
        block(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                  "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"query": "x"}'}), stop(1),
        *text_block(2, "Done."), *message_end()]))
    assert await collect(adapter) == [
        STARTED, TextDelta("Done."), Finish("end_turn", Usage(input_tokens=25, output_tokens=15))]


async def test_a_tool_call_cut_by_max_tokens_is_left_out(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(), *text_block(0, "Writing"),
        *tool_block(1, "toolu_03", "write_file", '{"path": "a.txt", "content": "lo'),
        *message_end("max_tokens", 100)]))
    assert await collect(adapter) == [
        STARTED, TextDelta("Writing"),
        Finish("max_tokens", Usage(input_tokens=25, output_tokens=100))]


async def test_the_request_the_server_receives(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[message_start(), *text_block(0, "ok"), *message_end()]))
    weather = ToolSpec(name="get_weather", description="The weather at a place.",
                       input_schema={"type": "object",
                                     "properties": {"location": {"type": "string"}}})
    conversation = [
        ChatMessage("user", "Weather in Paris and Rome?"),
        ChatMessage("assistant", "Checking both.", tool_calls=[
            _use("toolu_a", {"location": "Paris"}), _use("toolu_b", {"location": "Rome"})]),
        ChatMessage("tool", "18C", tool_use_id="toolu_a"),
        ChatMessage("tool", "no such city", tool_use_id="toolu_b", is_error=True),
        ChatMessage("assistant", "Paris is 18C; Rome failed."),
        ChatMessage("user", "Thanks."),
        ChatMessage("user", "And tomorrow?"),  # the turn before failed: no reply in between
    ]
    await collect(adapter, request(conversation, tools=[weather], system="Be brief.",
                                   params={"temperature": 0.2, "top_k": 5}))
    [received] = server.received
    assert received.headers["x-api-key"] == API_KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["content-type"] == "application/json"
    assert received.body == {
        "model": "claude-sonnet-4-5", "max_tokens": DEFAULT_MAX_TOKENS, "stream": True,
        "system": "Be brief.", "temperature": 0.2, "top_k": 5,
        "tools": [{"name": "get_weather", "description": "The weather at a place.",
                   "input_schema": weather.input_schema}],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
                 "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather",
                 "input": {"location": "Rome"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C",
                 "is_error": False},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "no such city",
                 "is_error": True}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Paris is 18C; Rome failed."}]},
            {"role": "user", "content": [{"type": "text", "text": "Thanks."},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ],
    }


async def test_tool_results_go_right_after_their_call_and_missing_ones_are_errors(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    """The session log can hold a result before the message that made the call (a call with
    bad input is answered while its message streams), or no result at all (the turn was
    interrupted while a client tool ran): the API refuses both as they are."""
    server.replies.append(Reply(body=[message_start(), *text_block(0, "ok"), *message_end()]))
    conversation = [
        ChatMessage("user", "Go"),
        ChatMessage("tool", "input is invalid", tool_use_id="toolu_bad", is_error=True),
        ChatMessage("assistant", "", tool_calls=[_use("toolu_bad", {}), _use("toolu_gone", {})]),
        ChatMessage("tool", "stray", tool_use_id="toolu_unknown"),
        ChatMessage("user", "Stop that; just say hi."),
    ]
    await collect(adapter, request(conversation))
    assert server.received[0].body["messages"] == [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_bad", "name": "get_weather", "input": {}},
            {"type": "tool_use", "id": "toolu_gone", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_bad", "content": "input is invalid",
             "is_error": True},
            {"type": "tool_result", "tool_use_id": "toolu_gone", "content": NO_RESULT,
             "is_error": True},
            {"type": "text", "text": "Stop that; just say hi."}]},
    ]


@pytest.mark.parametrize(("params", "budget", "sent"), [
    ({}, None, DEFAULT_MAX_TOKENS),
    ({"max_tokens": 1000}, None, 1000),
    ({"max_tokens": 1000}, 300, 300),
    ({"max_tokens": 1000}, 50_000, 1000),
    ({}, 200_000, DEFAULT_MAX_TOKENS),  # a budget above any model's output limit is not sent
])
async def test_max_tokens(server: FakeAnthropic, adapter: AnthropicAdapter,
                          params: dict[str, Any], budget: int | None, sent: int) -> None:
    server.replies.append(Reply(body=[message_start(), *text_block(0, "ok"), *message_end()]))
    await collect(adapter, request(params=params, max_tokens=budget))
    assert server.received[0].body["max_tokens"] == sent


async def test_calls_reuse_one_connection(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    for _ in range(3):
        server.replies.append(Reply(body=[message_start(), *text_block(0, "ok"),
                                          *message_end()]))
        await collect(adapter)
    assert len({received.client_port for received in server.received}) == 1


async def test_429_is_retryable_after_what_the_server_says(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(429, [*JSON, ("retry-after", "7")], error_body(
        "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")))
    error = await failure(adapter)
    assert error.retryable and error.retry_after == 7
    assert "429" in error.message and "per-minute rate limit" in error.message


@pytest.mark.parametrize(("status", "kind"), [(529, "overloaded_error"), (500, "api_error"),
                                              (503, "api_error")])
async def test_overloaded_and_server_errors_are_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter, status: int, kind: str) -> None:
    server.replies.append(Reply(status, JSON, error_body(kind, "Overloaded")))
    error = await failure(adapter)
    assert error.retryable and error.retry_after is None and kind in error.message


async def test_a_bad_request_is_not_retried_and_says_why(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(400, JSON, error_body(
        "invalid_request_error", "messages.1.content: Input should be a valid list")))
    error = await failure(adapter)
    assert not error.retryable and error.retry_after is None
    assert error.message == ("anthropic: HTTP 400 invalid_request_error: "
                             "messages.1.content: Input should be a valid list")


async def test_a_key_the_provider_echoes_is_redacted(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(401, JSON, error_body(
        "authentication_error", f"invalid x-api-key: {API_KEY}")))
    error = await failure(adapter)
    assert not error.retryable and "[redacted]" in error.message


async def test_a_body_that_is_not_json_is_quoted(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(502, [("content-type", "text/html")],
                                [b"<html>502 Bad Gateway</html>"]))
    error = await failure(adapter)
    assert error.retryable and "502 Bad Gateway" in error.message


async def test_an_error_event_in_the_stream_is_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(), *text_block(0, "Part", "ial")[:2],
        event("error", {"type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"}})]))
    chunks: list[Chunk] = []
    with pytest.raises(ModelError) as caught:
        async for chunk in adapter.stream(request()):
            chunks.append(chunk)
    assert chunks == [STARTED, TextDelta("Part")]
    assert caught.value.retryable and "overloaded_error: Overloaded" in caught.value.message


async def test_a_stream_cut_halfway_is_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(), *text_block(0, "Hello", "world")[:2],
        b'event: content_block_delta\ndata: {"type":"content_block_delta","ind'],
        complete=False))
    chunks: list[Chunk] = []
    with pytest.raises(ModelError) as caught:
        async for chunk in adapter.stream(request()):
            chunks.append(chunk)
    assert chunks == [STARTED, TextDelta("Hello")]
    assert caught.value.retryable and API_KEY not in caught.value.message
    assert "RemoteProtocolError" in caught.value.message, caught.value.message


async def test_a_stream_that_ends_without_message_stop_is_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[message_start(), *text_block(0, "Hello")]))
    error = await failure(adapter)
    assert error.retryable and "message_stop" in error.message


async def test_an_event_that_is_not_json_is_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[message_start(),
                                      b"event: content_block_start\ndata: {not json\n\n"]))
    error = await failure(adapter)
    assert error.retryable


async def test_a_tool_input_that_is_not_json_is_retryable(
        server: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    server.replies.append(Reply(body=[
        message_start(), *tool_block(0, "toolu_x", "get_weather", '{"location": '),
        *message_end("tool_use")]))
    error = await failure(adapter)
    assert error.retryable and "get_weather" in error.message


async def test_a_server_that_is_down_is_retryable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AnthropicAdapter(f"http://127.0.0.1:{port}", API_KEY, timeout=5) as adapter:
        error = await failure(adapter)
    assert error.retryable and "ConnectError" in error.message


async def test_a_given_client_is_used_and_left_open(server: FakeAnthropic) -> None:
    server.replies.append(Reply(body=[message_start(), *text_block(0, "ok"), *message_end()]))
    async with httpx.AsyncClient() as client:
        async with AnthropicAdapter(server.url, None, client=client) as adapter:
            await collect(adapter)
        assert not client.is_closed
    assert "x-api-key" not in server.received[0].headers  # no key: a proxy adds it
    assert API_KEY not in repr(adapter)


def _use(tool_use_id: str, input: dict[str, Any]) -> ToolUse:
    return ToolUse(turn_id="turn_1", message_id="msg_1", tool_use_id=tool_use_id,
                   name="get_weather", input=input, executor="client")


async def test_a_base_url_that_is_not_http_fails_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        AnthropicAdapter("api.anthropic.com", API_KEY)
