"""Turns through the provider adapters, end to end: the server configured with fake OpenAI and
Anthropic endpoints (real sockets, their real wire formats), an agent per provider, a turn each.
The keys reach the providers and nothing else: not an event, not a log line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from api.app import create_app
from engine.engine import Engine
from engine.runtime.tools import SCHEMAS
from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import create_agent, log, say, session, settle
from tests.helpers_anthropic import API_KEY as ANTHROPIC_KEY
from tests.helpers_anthropic import (
    FakeAnthropic,
    Reply,
    message_end,
    message_start,
    serving,
    text_block,
)
from tests.helpers_openai import KEY as OPENAI_KEY
from tests.helpers_openai import TEXT_STREAM, FakeOpenAI, cut_after, fake_openai, status, streams


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as fake:
        yield fake


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with serving(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture
async def api(settings: Settings, openai: FakeOpenAI,
              anthropic: FakeAnthropic) -> AsyncIterator[Api]:
    configured = msgspec.structs.replace(
        settings, openai_base_url=openai.base_url, openai_api_key=OPENAI_KEY,
        anthropic_base_url=anthropic.url, anthropic_api_key=ANTHROPIC_KEY,
    )
    async with Engine(configured) as engine:
        app = create_app(configured, engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spool.test") as c:
            yield Api(c, app)


async def agent(api: Api, key: str, adapter: str, name: str) -> str:
    """An agent on a provider's model ``name``."""
    return await create_agent(
        api, key, name=adapter, system="Be brief.",
        model={"adapter": adapter, "name": name, "params": {"temperature": 0.2}})


async def test_an_openai_turn_retries_a_429_and_streams_the_reply(
    api: Api, openai: FakeOpenAI, capsys: pytest.CaptureFixture[str],
) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, "openai", "gpt-4o"))
    openai.then(status(429, "Too Many Requests", {"error": {"message": "slow down"}},
                       {"Retry-After": "0"}), streams(*TEXT_STREAM))
    await say(api, key, sid, "hello")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    kinds = [e["type"] for e in events]
    assert kinds[2:] == ["turn_started", "message_start", "message_stop", "message_start",
                         "message_delta", "message_delta", "message_delta", "message_stop",
                         "spend_recorded", "session_done"]
    assert events[4]["data"]["stop_reason"] == "error"  # the 429'd call, closed
    assert "".join(e["data"]["text"] for e in events if e["type"] == "message_delta") == (
        "Hello wörld 日本!")
    stop = events[-3]["data"]
    assert stop["stop_reason"] == "end_turn"
    assert (stop["usage"]["input_tokens"], stop["usage"]["output_tokens"]) == (19, 10)
    assert events[-1]["data"]["status"] == "completed"
    sent = openai.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body["model"] == "gpt-4o" and sent.body["temperature"] == 0.2
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "hello"}]
    assert OPENAI_KEY not in json.dumps(events)
    assert OPENAI_KEY not in capsys.readouterr().out


async def test_a_built_in_tool_is_offered_with_its_own_schema(
    api: Api, openai: FakeOpenAI,
) -> None:
    key = await api.key(await api.tenant(), "member")
    body = {"name": "m", "model": {"adapter": "openai", "name": "gpt-4o"},
            "tools": [{"name": "memory_read", "executor": "server"}]}
    agent_id = (await api.request("POST", "/v1/agents", key, json=body)).json()["id"]
    sid = await session(api, key, agent_id)
    openai.then(streams(*TEXT_STREAM))
    await say(api, key, sid, "hello")
    await settle(api, key, sid, "idle")
    [offered] = openai.requests[-1].body["tools"]
    assert offered["function"]["parameters"] == SCHEMAS["memory_read"]


async def test_a_stream_cut_halfway_is_closed_and_the_call_retried(
    api: Api, openai: FakeOpenAI,
) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, "openai", "gpt-4o"))
    openai.then(cut_after(*TEXT_STREAM[:2]), streams(*TEXT_STREAM))
    await say(api, key, sid, "hello")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    stops = [e["data"]["stop_reason"] for e in events if e["type"] == "message_stop"]
    assert stops == ["error", "end_turn"]
    first_message = events[3]["data"]["message_id"]
    cut = [e["data"]["text"] for e in events
           if e["type"] == "message_delta" and e["data"]["message_id"] == first_message]
    assert cut == ["Hello"]  # what streamed before the cut stays in the log, closed
    assert events[-1]["data"]["status"] == "completed"


async def test_an_anthropic_turn_streams_the_reply(
    api: Api, anthropic: FakeAnthropic, capsys: pytest.CaptureFixture[str],
) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, "anthropic", "claude-sonnet-4-5"))
    anthropic.replies.append(Reply(body=[message_start(12, cache_read=3),
                                         *text_block(0, "Hi", " there"), *message_end()]))
    await say(api, key, sid, "hello")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert "".join(e["data"]["text"] for e in events if e["type"] == "message_delta") == (
        "Hi there")
    usage = events[-2]["data"]["usage"]
    assert (usage["input_tokens"], usage["cache_read_tokens"], usage["output_tokens"]) == (
        12, 3, 15)
    assert events[-1]["data"]["status"] == "completed"
    received = anthropic.received[-1]
    assert received.headers["x-api-key"] == ANTHROPIC_KEY
    assert received.body["system"] == "Be brief."
    assert ANTHROPIC_KEY not in json.dumps(events)
    assert ANTHROPIC_KEY not in capsys.readouterr().out


async def test_an_adapter_the_server_lacks_fails_the_turn_saying_so(
    settings: Settings,
) -> None:
    unconfigured = msgspec.structs.replace(settings, openai_base_url=None)
    async with Engine(unconfigured) as engine:
        app = create_app(unconfigured, engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spool.test") as c:
            api = Api(c, app)
            key = await api.key(await api.tenant(), "member")
            sid = await session(api, key, await agent(api, key, "openai", "gpt-4o"))
            await say(api, key, sid, "hello")
            await settle(api, key, sid, "idle")
            done: dict[str, Any] = (await log(api, key, sid))[-1]["data"]
    assert done["status"] == "failed" and "'openai' adapter is not configured" in done["error"]


def test_settings_never_show_their_secrets(settings: Settings) -> None:
    shown = repr(msgspec.structs.replace(settings, openai_api_key=OPENAI_KEY,
                                         anthropic_api_key=ANTHROPIC_KEY))
    assert OPENAI_KEY not in shown and ANTHROPIC_KEY not in shown
    assert settings.admin_token is not None and settings.admin_token not in shown
