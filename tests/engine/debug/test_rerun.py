"""engine/debug/rerun.py: sessions run by the real worker, re-run from their logs against a scratch
log: deterministic in full and at every prefix (a session cut anywhere), through approvals,
client tools, server tools, model errors and retries, interrupts, a queue and a worker that
died mid-message; a changed agent config is reported at the first event that differs."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.debug.reader import SessionReader
from engine.debug.rerun import rerun
from engine.events import AgentConfig, Event
from tests.api.conftest import Api
from tests.helpers import agent, approved_client_call, cut_by_a_dead_worker, say, session, settle


async def _recorded(api: Api, sid: str) -> tuple[list[Event], AgentConfig]:
    reader = await SessionReader.open(api.app.state.engine._pool, sid)
    events = await reader.events()
    config = await reader.agent_config(events[0])
    assert config is not None
    return events, config


async def _every_prefix_is_deterministic(events: list[Event], config: AgentConfig) -> None:
    for end in range(1, len(events) + 1):
        report = await rerun(events[:end], config, patience=5)
        assert report.deterministic, (end, report)
        assert report.matched == end


async def test_a_turn_with_an_approval_and_a_client_tool(api: Api) -> None:
    _, sid, _ = await approved_client_call(api)
    events, config = await _recorded(api, sid)
    report = await rerun(events, config)
    assert report.deterministic and report.matched == report.events == len(events)
    await _every_prefix_is_deterministic(events, config)


async def test_a_changed_config_differs_at_the_first_event_it_changes(api: Api) -> None:
    _, sid, _ = await approved_client_call(api)
    events, config = await _recorded(api, sid)
    stricter = msgspec.structs.replace(
        config, limits=msgspec.structs.replace(config.limits, max_turns=1))
    report = await rerun(events, stricter)
    second_call = [e.seq for e in events if e.type == "message_start"][1]
    assert not report.deterministic and report.difference is not None
    assert report.difference.seq == second_call and report.matched == second_call - 1
    assert report.difference.expected["type"] == "message_start"
    assert report.difference.got is not None
    assert report.difference.got["type"] == "session_done"
    assert "max_turns" in report.difference.got["error"]


async def _run(api: Api, script: list[dict[str, Any]], messages: list[tuple[str, str | None]],
               **extra: Any) -> tuple[list[Event], AgentConfig]:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, script, **extra))
    for text, mode in messages:
        assert (await say(api, key, sid, text, mode)).status_code == 202
    await settle(api, key, sid, "idle")
    return await _recorded(api, sid)


async def test_server_tools_errors_retries_and_a_queue(api: Api) -> None:
    memory = {"name": "memory_write", "executor": "server", "input_schema": {"type": "object"}}
    script = [{"tool_calls": [{"name": "memory_write", "input": {"key": "k", "value": "v"}}]},
              {"text": "saved"}, {"error": "boom"}, {"text": "fine"}]
    events, config = await _run(api, script, [("one", None), ("two", "enqueue"),
                                              ("three", "enqueue")],
                                tools=[memory])
    assert [e.type for e in events].count("session_done") == 3
    report = await rerun(events, config)
    assert report.deterministic, report
    await _every_prefix_is_deterministic(events, config)


async def test_an_interrupted_turn(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}, {"text": "new"}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "first")
    await settle(api, key, sid, "requires_action")
    await say(api, key, sid, "instead", "interrupt")
    await settle(api, key, sid, "idle")
    events, config = await _recorded(api, sid)
    assert "session_interrupted" in [e.type for e in events]
    await _every_prefix_is_deterministic(events, config)


async def test_a_worker_that_died_mid_message(api: Api) -> None:
    """As in tests/api/test_turns.py: a dead worker's half message, closed by the next."""
    key, sid = await cut_by_a_dead_worker(api)
    await settle(api, key, sid, "idle")
    events, config = await _recorded(api, sid)
    assert [e.type for e in events].count("message_start") == 2
    await _every_prefix_is_deterministic(events, config)


async def test_a_session_without_an_agent_has_nothing_to_rerun(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    await say(api, key, sid, "only recorded")
    reader = await SessionReader.open(api.app.state.engine._pool, sid)
    events = await reader.events()
    assert await reader.agent_config(events[0]) is None
    report = await rerun(events, None)
    assert report.deterministic and report.matched == 2
