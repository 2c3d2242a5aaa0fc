"""A turn always ends: a reply of any length is appended within the store's per-append limit
(with its message_stop and spend_recorded together), and a step that keeps failing ends its turn
with one ``session_done{status: failed}`` after a bounded number of tries, counted by the
claims, so a worker that died mid-step counts as a try too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from api.app import create_app
from engine.engine import Engine
from engine.events import Event
from engine.infra.db import create_pool
from engine.runtime.adapters.registry import adapters_for
from engine.runtime.schedule import Leases
from engine.runtime.worker import Worker
from engine.settings import Settings
from tests.api.conftest import Api

MAX_TRIES = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, step_max_tries=MAX_TRIES)


async def _start(api: Api, script: list[dict[str, Any]]) -> tuple[str, str, str]:
    """A tenant's member key and a session with a scripted agent: (tenant, key, session)."""
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    agent = await api.request("POST", "/v1/agents", key, json={
        "name": "a", "model": {"adapter": "scripted", "script": script}})
    assert agent.status_code == 201, agent.text
    created = await api.request("POST", "/v1/sessions", key,
                                json={"agent_id": agent.json()["id"]})
    assert created.status_code == 201, created.text
    return tenant, key, str(created.json()["id"])


async def _say(api: Api, key: str, sid: str, text: str) -> None:
    sent = await api.request("POST", f"/v1/sessions/{sid}/messages", key, json={"content": text})
    assert sent.status_code == 202, sent.text


async def _until_done(engine: Engine, tenant: str, sid: str, turns: int = 1,
                      within: float = 60) -> list[Event]:
    """The session's log once ``turns`` turns have ended (bounded: a turn that never ends fails
    the test here)."""
    async with asyncio.timeout(within):
        while True:
            events = await engine.store.read_whole_stream(sid, tenant_id=tenant)
            if sum(e.type == "session_done" for e in events) >= turns:
                return events
            await asyncio.sleep(0.05)


def _data(event: Event) -> dict[str, Any]:
    found: dict[str, Any] = msgspec.json.decode(event.data)
    return found


def _types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


@pytest.mark.parametrize("words", [999, 1000, 1001, 2000, 6000])
async def test_a_reply_of_any_length_ends_once_with_its_spend(
    api: Api, engine: Engine, words: int,
) -> None:
    # No delay: the whole reply arrives while the first append is in flight, so the flush
    # at the stop holds up to a thousand deltas beside message_stop and spend_recorded.
    text = " ".join(f"w{i}" for i in range(words))
    tenant, key, sid = await _start(api, [{"text": text}])
    await _say(api, key, sid, "go")
    events = await _until_done(engine, tenant, sid)
    kinds = _types(events)
    assert kinds.count("message_start") == 1
    assert kinds.count("message_delta") == words
    assert kinds.count("message_stop") == kinds.count("spend_recorded") == 1
    assert [_data(e)["status"] for e in events if e.type == "session_done"] == ["completed"]
    assert kinds[-3:] == ["message_stop", "spend_recorded", "session_done"]
    assert "".join(_data(e)["text"] for e in events if e.type == "message_delta") == text
    assert _data(events[-3])["usage"]["output_tokens"] == words


async def _refuse(engine: Engine, event_type: str) -> None:
    """From now on Postgres refuses every append holding an event of this type: a step that
    appends one fails every time, in whichever worker runs it."""
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.execute(f"""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW
                WHEN (NEW.type = '{event_type}') EXECUTE FUNCTION refuse();""")


async def _allow(engine: Engine) -> None:
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.execute("DROP TRIGGER refuse ON events; DROP FUNCTION refuse()")


@pytest.mark.parametrize("refused", ["turn_started", "message_delta"])
async def test_a_step_that_always_fails_ends_its_turn_failed_once(
    api: Api, engine: Engine, refused: str,
) -> None:
    tenant, key, sid = await _start(api, [{"text": "never said"}, {"text": "said at last"}])
    await _refuse(engine, refused)
    await _say(api, key, sid, "go")
    events = await _until_done(engine, tenant, sid)
    await asyncio.sleep(1)  # nothing else comes: no try after the turn ended
    after = await engine.store.read_whole_stream(sid, tenant_id=tenant)
    assert len(after) == len(events)
    [done] = [_data(e) for e in events if e.type == "session_done"]
    assert done["status"] == "failed"
    assert f"failed {MAX_TRIES} times" in done["error"]
    kinds = _types(events)
    assert refused not in kinds
    # Every try of the model call is a message, each closed (the last with the turn's end).
    assert kinds.count("message_start") == kinds.count("message_stop")
    assert kinds.count("message_start") == (MAX_TRIES if refused == "message_delta" else 0)

    # The next turn is tried afresh, and succeeds once the fault is gone.
    await _allow(engine)
    await _say(api, key, sid, "again")
    events = await _until_done(engine, tenant, sid, turns=2)
    assert [_data(e)["status"] for e in events if e.type == "session_done"] == [
        "failed", "completed"]


@pytest.fixture
async def own_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, size=4)
    yield pool
    await pool.close()


async def test_workers_that_die_mid_step_count_as_tries(
    settings: Settings, own_pool: asyncpg.Pool,
) -> None:
    quiet = msgspec.structs.replace(settings, workers=0)  # the test plays the workers
    async with Engine(quiet) as engine:
        app = create_app(quiet, engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://spool.test") as client:
            tenant, key, sid = await _start(Api(client, app), [{"text": "never said"}])
            await _say(Api(client, app), key, sid, "go")
        async with asyncio.timeout(30):  # the work list has it
            while not await own_pool.fetchval(  # noqa: ASYNC110
                    "SELECT wanted_position > done_position FROM session_runs"
                    " WHERE session_id = $1", sid):
                await asyncio.sleep(0.05)
        # MAX_TRIES workers claim it and die without a word (their leases run out).
        for n in range(MAX_TRIES):
            [claim] = await Leases(own_pool, f"wrk_dead{n}", ttl=0.01).claim(1)
            assert claim.tries == n + 1
            await asyncio.sleep(0.05)
        # The next worker's claim is one try too many: it ends the turn without running it.
        worker = Worker(own_pool, engine.store, engine.agents, adapters_for(quiet),
                        tasks=engine.tasks, wakeup=asyncio.Event(), concurrency=1, poll=0.05,
                        step_max_tries=MAX_TRIES)
        worker.start()
        try:
            events = await _until_done(engine, tenant, sid)
            # The run that ended the turn completed: its tries count from nothing again.
            async with asyncio.timeout(30):
                while await own_pool.fetchval(  # noqa: ASYNC110
                        "SELECT tries FROM session_runs WHERE session_id = $1", sid):
                    await asyncio.sleep(0.05)
        finally:
            await worker.stop()
        assert "turn_started" not in _types(events)
        [done] = [_data(e) for e in events if e.type == "session_done"]
        assert done["status"] == "failed"
