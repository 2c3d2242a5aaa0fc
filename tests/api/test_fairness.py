"""Workers are shared fairly between tenants: wanted sessions are claimed round-robin by tenant
(a tenant with nothing running goes before the next of another's backlog), and no tenant runs
more than SPOOL_TENANT_MAX_RUNNING_TURNS turns at once, across every worker process.

Concurrency is read from the log after the fact: positions are handed out in commit order, and a
worker appends a turn's session_done before giving its lease back, so walking a tenant's
turn_started / session_done events by position never sees fewer turns running than held
leases."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Api

SLOW = " ".join(f"w{i}" for i in range(10))


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return msgspec.structs.replace(settings, **request.param)


async def _tenant(api: Api, text: str, delay: float = 0.0) -> tuple[str, str, str]:
    """A tenant, its member key, and an agent replying ``text``: (tenant, key, agent)."""
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    agent = await api.request("POST", "/v1/agents", key, json={
        "name": "a", "model": {"adapter": "scripted",
                               "script": [{"text": text, "delay": delay}]}})
    assert agent.status_code == 201, agent.text
    return tenant, key, str(agent.json()["id"])


async def _turns(api: Api, key: str, agent: str, n: int) -> list[str]:
    """``n`` sessions, then a turn submitted to each (close together)."""
    sessions = []
    for _ in range(n):
        created = await api.request("POST", "/v1/sessions", key, json={"agent_id": agent})
        sessions.append(str(created.json()["id"]))
    for sid in sessions:
        sent = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                 json={"content": "go"})
        assert sent.status_code == 202, sent.text
    return sessions


async def _marks(engine: Engine, tenant: str) -> list[tuple[int, str, str]]:
    """The tenant's turn_started and session_done events: (position, type, session)."""
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        rows = await conn.fetch(
            "SELECT position, type, stream_id FROM events WHERE tenant_id = $1"
            " AND type IN ('turn_started', 'session_done') ORDER BY position", tenant)
    return [(row[0], row[1], row[2]) for row in rows]


async def _until(engine: Engine, tenant: str, kind: str, count: int,
                 within: float = 60) -> list[tuple[int, str, str]]:
    async with asyncio.timeout(within):
        while True:
            marks = await _marks(engine, tenant)
            if sum(mark[1] == kind for mark in marks) >= count:
                return marks
            await asyncio.sleep(0.05)


async def _busy_then_other(api: Api, engine: Engine, delay: float, turns: int
                           ) -> tuple[str, list[tuple[int, str, str]]]:
    """Tenant A queues ``turns`` slow turns; once two run, tenant B sends one quick turn. A's
    tenant id, and B's marks once its turn is done."""
    busy, busy_key, slow = await _tenant(api, SLOW, delay=delay)
    await _turns(api, busy_key, slow, turns)
    await _until(engine, busy, "turn_started", 2)
    other, other_key, quick = await _tenant(api, "hello")
    await _turns(api, other_key, quick, 1)
    return busy, await _until(engine, other, "session_done", 1)


def _most_running(marks: list[tuple[int, str, str]]) -> int:
    running, most = 0, 0
    for _, kind, _ in marks:
        running += 1 if kind == "turn_started" else -1
        most = max(most, running)
    return most


@pytest.mark.parametrize("settings", [{"workers": 4, "tenant_max_running_turns": 2}],
                         indirect=True)
async def test_a_tenant_saturating_the_workers_leaves_room_for_another(
    api: Api, engine: Engine,
) -> None:
    busy, _ = await _busy_then_other(api, engine, delay=0.5, turns=8)  # 5 s a turn
    # B's turn ran while A's backlog was still waiting (it did not wait for A's 8 turns), and
    # A never ran more than its cap.
    marks = await _marks(engine, busy)
    assert sum(kind == "turn_started" for _, kind, _ in marks) < 8
    assert _most_running(marks) <= 2


@pytest.mark.parametrize("settings", [{"workers": 2, "tenant_max_running_turns": 0}],
                         indirect=True)
async def test_without_a_cap_a_freed_slot_goes_to_the_tenant_running_nothing(
    api: Api, engine: Engine,
) -> None:
    # 4 s a turn
    busy, [(started, _, _), *_] = await _busy_then_other(api, engine, delay=0.4, turns=6)
    # B took the first slot A freed (at worst the second, if two freed at once), not the
    # seventh: A's backlog, wanted earlier, waited.
    busy_before = [m for m in await _marks(engine, busy)
                   if m[1] == "turn_started" and m[0] < started]
    assert len(busy_before) <= 3


@pytest.mark.parametrize("settings", [{"workers": 2, "tenant_max_running_turns": 3}],
                         indirect=True)
async def test_the_cap_holds_across_worker_processes_sharing_a_database(
    api: Api, engine: Engine, settings: Settings,
) -> None:
    async with Engine(settings) as second:  # another process's worker: 4 slots in all
        assert engine.worker is not None and second.worker is not None
        ids = {engine.worker.id, second.worker.id}
        busy, key, slow = await _tenant(api, SLOW, delay=0.4)  # 4 s a turn
        await _turns(api, key, slow, 6)
        marks = await _until(engine, busy, "session_done", 6)
    # Three at once needs both workers (two slots each); a fourth would pass the cap.
    assert _most_running(marks) == 3
    assert await _workers(engine, busy) == ids


async def _workers(engine: Engine, tenant: str) -> set[Any]:
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        rows = await conn.fetch("SELECT data->>'worker' FROM events WHERE tenant_id = $1"
                                " AND type = 'turn_started'", tenant)
    return {row[0] for row in rows}
