"""Budgets and usage end to end: spend recorded with each model call, /v1/usage groupings,
budget limits per scope with spent and remaining, 402 before a turn, a running turn stopped
``budget_exceeded``, and many sessions racing one agent's limit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.prices import ModelPrice
from engine.settings import Settings
from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error, create_agent, log, say, session, settle

MODEL = "test-model"  # $1 per input token, $2 per output token: costs are easy to read


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path / "data",
                    admin_token=ADMIN_TOKEN, workers=8,
                    prices=((MODEL, ModelPrice(input=1_000_000, output=2_000_000)),))


def calls(n: int, *, input_tokens: int = 40, output_tokens: int = 10, delay: float = 0.0,
          text: str = "") -> list[dict[str, Any]]:
    """A script of ``n`` model calls that each write memory (a server tool), then a reply.
    ``delay`` is waited before each word of ``text``."""
    call = {"text": text, "tool_calls": [{"name": "memory_write",
                                          "input": {"key": "k", "value": "v"}}],
            "input_tokens": input_tokens, "output_tokens": output_tokens, "delay": delay}
    return [call] * n + [{"text": "done", "input_tokens": input_tokens,
                          "output_tokens": output_tokens}]


async def agent(api: Api, key: str, script: list[dict[str, Any]]) -> str:
    """An agent on the priced scripted model that may write memory (a server tool)."""
    return await create_agent(
        api, key, name="spender", model={"adapter": "scripted", "name": MODEL, "script": script},
        tools=[{"name": "memory_write", "executor": "server"}])


async def put_budget(api: Api, key: str, scope: str, limits: dict[str, Any]) -> Any:
    return await api.request("PUT", f"/v1/budgets/{scope}", key, json={"limits": limits})


async def usage(api: Api, key: str, query: str = "") -> list[dict[str, Any]]:
    response = await api.request("GET", f"/v1/usage?{query}", key)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_each_model_call_records_its_spend_and_usage_groups_it(api: Api) -> None:
    key = await api.key(await api.tenant())
    agent_id = await agent(api, key, calls(2))
    sid = await session(api, key, agent_id)
    await say(api, key, sid, "go")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    spends = [e for e in events if e["type"] == "spend_recorded"]
    stops = [e for e in events if e["type"] == "message_stop"]
    assert len(spends) == len(stops) == 3
    for spend, stop in zip(spends, stops, strict=True):
        # appended with its message_stop, in the same append
        assert spend["seq"] == stop["seq"] + 1
        assert spend["data"]["message_id"] == stop["data"]["message_id"]
        assert spend["data"]["usage"] == stop["data"]["usage"]
        assert spend["data"] | {"turn_id": None, "message_id": None, "usage": None} == {
            "type": "spend_recorded", "turn_id": None, "message_id": None, "usage": None,
            "agent_id": agent_id, "model": MODEL, "tokens": 50, "cost_nanos": 60 * 10**9}

    last = events[-1]["position"]
    [total] = await usage(api, key, f"min_position={last}")
    assert total == {"key": "total", "calls": 3, "input_tokens": 120, "output_tokens": 30,
                     "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
                     "tokens": 150, "usd": 180.0}
    [by_agent] = await usage(api, key, "group_by=agent")
    [by_session] = await usage(api, key, "group_by=session")
    [by_model] = await usage(api, key, "group_by=model")
    [by_day] = await usage(api, key, "group_by=day")
    assert (by_agent["key"], by_session["key"], by_model["key"]) == (agent_id, sid, MODEL)
    assert by_day["key"] == events[-1]["created_at"][:10]
    assert by_agent["usd"] == by_session["usd"] == by_model["usd"] == by_day["usd"] == 180.0
    day = by_day["key"]
    assert await usage(api, key, f"group_by=day&from={day}&to=2999-01-01") == [by_day]
    assert await usage(api, key, f"group_by=day&to={day}") == []

    # another tenant sees none of it
    other = await api.key(await api.tenant("other"))
    assert await usage(api, other, "group_by=agent") == []


async def test_usage_refuses_bad_parameters(api: Api) -> None:
    key = await api.key(await api.tenant(), "viewer")
    for query, field in (("group_by=colour", "group_by"), ("from=2026-13-01", "from"),
                         ("to=yesterday", "to"), ("from=2026-02-01&to=2026-01-01", "to"),
                         ("limit=0", "limit")):
        error = assert_error(await api.request("GET", f"/v1/usage?{query}", key), 400,
                             "invalid_request")
        assert error["details"]["field"] == field, query


async def test_budgets_are_checked_named_and_isolated(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant)
    agent_id = await agent(api, key, calls(0))
    other_key = await api.key(await api.tenant("other"))
    other_agent = await agent(api, other_key, calls(0))

    for scope, limits, status, field in (
            ("everyone", {"day": {"tokens": 1}}, 400, "scope"),
            ("agent:nope", {"day": {"tokens": 1}}, 400, "scope"),
            (f"agent:{other_agent}", {"day": {"tokens": 1}}, 404, "scope"),
            ("tenant", {"day": {}}, 400, "limits.day"),
            ("tenant", {"week": {"tokens": 1}}, 422, "limits.week"),
            ("tenant", {"day": {"tokens": -1}}, 422, "limits.day.tokens"),
            ("tenant", {"day": {"usd": "1"}}, 422, "limits.day.usd")):
        response = await put_budget(api, key, scope, limits)
        assert response.status_code == status, (scope, limits, response.text)
        assert response.json()["error"]["details"]["field"] == field, (scope, limits)
    member = await api.key(tenant, "member")
    assert_error(await put_budget(api, member, "tenant", {"day": {"tokens": 5}}), 403,
                 "forbidden")
    assert (await api.request("GET", "/v1/budgets", key)).json()["data"] == []  # nothing written

    response = await put_budget(api, key, f"agent:{agent_id}",
                                {"day": {"tokens": 1000, "usd": 2.5}, "total": {"usd": 100}})
    assert response.status_code == 200, response.text
    assert int(response.headers["Spool-Position"]) > 0
    budget = response.json()
    assert budget["scope"] == f"agent:{agent_id}"
    assert budget["limits"]["day"] | {"resets_at": None} == {
        "tokens": 1000, "usd": 2.5, "spent_tokens": 0, "spent_usd": 0.0,
        "remaining_tokens": 1000, "remaining_usd": 2.5, "exceeded": False, "resets_at": None}
    assert budget["limits"]["day"]["resets_at"].endswith("T00:00:00Z")
    assert budget["limits"]["total"]["tokens"] is None
    assert budget["limits"]["total"]["resets_at"] is None
    await put_budget(api, key, "tenant", {"month": {"tokens": 10**6}})
    listed = (await api.request("GET", "/v1/budgets?limit=1", key)).json()
    assert [b["scope"] for b in listed["data"]] == [f"agent:{agent_id}"] and listed["has_more"]
    rest = (await api.request("GET", f"/v1/budgets?after={listed['next_cursor']}", key)).json()
    assert [b["scope"] for b in rest["data"]] == ["tenant"] and not rest["has_more"]
    assert (await api.request("GET", "/v1/budgets", other_key)).json()["data"] == []

    deleted = await api.request("DELETE", "/v1/budgets/tenant", key)
    assert deleted.json() == {"scope": "tenant", "deleted": True}
    position = deleted.headers["Spool-Position"]
    assert_error(await api.request("GET", f"/v1/budgets/tenant?min_position={position}", key),
                 404, "not_found")


async def test_a_turn_over_budget_is_refused_with_402_naming_the_scope(api: Api) -> None:
    key = await api.key(await api.tenant())
    agent_id = await agent(api, key, [])  # echoes: 1 input token + 3 output per "hi"
    sid = await session(api, key, agent_id)
    await put_budget(api, key, f"session:{sid}", {"total": {"tokens": 4}})
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    error = assert_error(await say(api, key, sid, "hi"), 402, "budget_exceeded")
    assert error["details"] == {"scope": f"session:{sid}", "period": "total",
                                "limit": {"tokens": 4, "usd": None},
                                "spent": {"tokens": 4, "usd": 7.0}}  # 1 in, 3 out
    # the session's other limits and other sessions are untouched
    other = await session(api, key, agent_id)
    assert (await say(api, key, other, "hi")).status_code == 202
    # raising the limit lets it go on
    await put_budget(api, key, f"session:{sid}", {"total": {"tokens": 100}})
    assert (await say(api, key, sid, "hi")).status_code == 202


async def test_a_running_turn_that_crosses_its_budget_stops(api: Api) -> None:
    key = await api.key(await api.tenant())
    agent_id = await agent(api, key, calls(20))
    sid = await session(api, key, agent_id)
    await put_budget(api, key, "tenant", {"day": {"usd": 130}})  # each call costs $60
    await say(api, key, sid, "go")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert events[-1]["data"]["status"] == "budget_exceeded"
    assert "tenant budget for day" in events[-1]["data"]["error"]
    spends = [e for e in events if e["type"] == "spend_recorded"]
    assert len(spends) == 3  # $60, $120 (under), $180 (crossed): no fourth call
    budget = (await api.request("GET", "/v1/budgets/tenant", key)).json()["limits"]["day"]
    assert (budget["spent_usd"], budget["remaining_usd"], budget["exceeded"]) == (180, 0, True)


async def test_sessions_racing_one_agents_limit_overshoot_by_at_most_one_call_each(
        api: Api, database_url: str) -> None:
    key = await api.key(await api.tenant())
    agent_id = await agent(api, key, calls(40, delay=0.05, text="thinking"))  # ~50 ms a call
    sessions = [await session(api, key, agent_id) for _ in range(8)]
    limit, per_call = 1000, 50
    await put_budget(api, key, f"agent:{agent_id}", {"total": {"tokens": limit}})
    sent = await asyncio.gather(*(say(api, key, sid, "go") for sid in sessions))
    assert all(response.status_code == 202 for response in sent)
    # Then the budgets view is held back for a while (its checkpoint row locked, as a slow page
    # would), long before the sessions reach the limit: the runtime's checks must wait for the
    # view rather than trust what it shows (else each session runs on for the whole second).
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = 'budgets'"
                               " FOR UPDATE")
            await asyncio.sleep(1.0)
    finally:
        await conn.close()
    for sid in sessions:
        await settle(api, key, sid, "idle", within=30)
    spent = 0
    for sid in sessions:
        events = await log(api, key, sid)
        assert events[-1]["data"]["status"] == "budget_exceeded"
        spent += sum(e["data"]["tokens"] for e in events if e["type"] == "spend_recorded")
    assert limit <= spent <= limit + len(sessions) * per_call
    budget = (await api.request("GET", f"/v1/budgets/agent:{agent_id}", key)).json()
    assert budget["limits"]["total"]["spent_tokens"] == spent


async def test_a_call_cut_short_is_charged_what_was_counted(api: Api) -> None:
    key = await api.key(await api.tenant())
    words = " ".join(f"w{i}" for i in range(40))
    agent_id = await agent(api, key, [{"text": words, "delay": 0.05, "input_tokens": 30}])
    sid = await session(api, key, agent_id)
    await say(api, key, sid, "go")
    async with asyncio.timeout(30):  # a few words in, the user interrupts
        while sum(e["type"] == "message_delta" for e in await log(api, key, sid)) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert (await api.request("POST", f"/v1/sessions/{sid}/interrupt", key)).status_code == 202
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    [stop] = [e["data"] for e in events if e["type"] == "message_stop"]
    [spend] = [e["data"] for e in events if e["type"] == "spend_recorded"]
    streamed = sum(e["type"] == "message_delta" for e in events)
    assert stop["stop_reason"] == "interrupted"
    # the input the model had counted, and an output token per delta it had sent (some may
    # not have been written: the interrupt came first)
    assert stop["usage"]["input_tokens"] == 30 and 3 <= streamed <= stop["usage"]["output_tokens"]
    assert stop["usage"]["output_tokens"] < 40
    assert spend["estimated"] is True and spend["usage"] == stop["usage"]
    assert spend["tokens"] == 30 + stop["usage"]["output_tokens"]
    assert spend["cost_nanos"] == (30 + 2 * stop["usage"]["output_tokens"]) * 10**9
    assert events[-1]["data"]["status"] == "cancelled"
