"""Rebuild and verify: a corrupted row of a view is reported as drift (both versions of the
row), a rebuild from position 0 puts it right, and a clean view verifies clean."""

from __future__ import annotations

import pytest

from engine.errors import InvalidRequest
from engine.projections.checks import rebuild, verify
from tests.api.conftest import Api
from tests.helpers import agent, caught_up, new_board, new_task, say, session, settle


async def test_verify_reports_a_corrupted_row_and_rebuild_repairs_it(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    board = await new_board(api, key)
    first = await new_task(api, key, board, title="first")
    await new_task(api, key, board, title="second", dependencies=[first["id"]])
    await caught_up(api, "tasks")
    pool = api.app.state.engine._pool
    assert (await verify(pool, "tasks")).clean

    async with pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET title = 'corrupted' WHERE task_id = $1", first["id"])
    drift = await verify(pool, "tasks")
    assert not drift.clean
    [live] = drift.only_live["tasks"]
    [rebuilt] = drift.only_rebuilt["tasks"]
    assert (live["task_id"], live["title"]) == (first["id"], "corrupted")
    assert (rebuilt["task_id"], rebuilt["title"]) == (first["id"], "first")
    assert drift.only_live["boards"] == [] and drift.only_live["task_dependencies"] == []

    position = await rebuild(pool, "tasks")
    assert position >= drift.position
    assert (await verify(pool, "tasks")).clean
    got = await api.request("GET", f"/v1/tasks/{first['id']}", key)
    assert got.json()["title"] == "first"


async def test_views_the_runtime_writes_to_verify_clean(api: Api) -> None:
    key = await api.key(await api.tenant(), "owner")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "a"}}]}, {"text": "ok"}]
    sid = await session(api, key, await agent(api, key, script, tools=[
        {"name": "lookup", "input_schema": {"type": "object"}, "requires_approval": True}]))
    await say(api, key, sid, "go")
    await settle(api, key, sid, "requires_action")
    await api.request("PUT", "/v1/budgets/tenant", key, json={"limits": {"day": {"tokens": 99}}})
    for name in ("approvals", "agents", "budgets"):
        await caught_up(api, name)
    pool = api.app.state.engine._pool
    # (session_runs: leases and done marks are not the view's)
    for name in ("session_runs", "approvals", "agents", "budgets"):
        assert (await verify(pool, name)).clean, name
    await pool.execute("UPDATE spend_totals SET tokens = tokens + 1 WHERE period = 'day'")
    drift = await verify(pool, "budgets")
    # one row per scope the call's spend falls in: the tenant, the agent, the session
    assert sorted(r["scope"].split(":")[0] for r in drift.only_live["spend_totals"]) == [
        "agent", "session", "tenant"]
    await rebuild(pool, "budgets")
    assert (await verify(pool, "budgets")).clean
    with pytest.raises(InvalidRequest):
        await verify(pool, "nope")

    async with pool.acquire() as conn:
        await conn.execute("UPDATE session_summaries SET status = 'idle'")
        await conn.execute("UPDATE agents SET active_sessions = 0")
    drift = await verify(pool, "agents")
    [live] = drift.only_live["session_summaries"]
    [rebuilt] = drift.only_rebuilt["session_summaries"]
    assert (live["status"], rebuilt["status"]) == ("idle", "requires_action")
    assert drift.only_rebuilt["agents"][0]["active_sessions"] == 1
    await rebuild(pool, "agents")
    assert (await verify(pool, "agents")).clean
