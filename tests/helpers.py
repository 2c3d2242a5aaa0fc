"""What many test modules do through the API: check an error envelope, create an agent and a
session, say something, wait for a session to settle, read its log, make boards and tasks, the
same over a real socket (``Live``), a database URL of the test server, and a running event
store. Test modules import these from here, never from one another
(tests/build/test_test_layout.py checks that)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine.infra.db import create_pool
from engine.log.store import EventStore

if TYPE_CHECKING:  # the fixtures' classes; tests/api/conftest.py imports this module
    import httpx

    from tests.api.conftest import Api, Live
    from tests.api.sse_client import Frame

StoreT = TypeVar("StoreT", bound=EventStore)

# A client tool every scripted agent offers unless told otherwise.
LOOKUP = {"name": "lookup", "input_schema": {
    "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}


def with_database(url: str, name: str) -> str:
    """The same Postgres server, database ``name`` (bench/_common.py uses it too)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@asynccontextmanager
async def started(store: StoreT) -> AsyncIterator[StoreT]:
    """The store with its appender running, stopped on the way out."""
    store.start()
    try:
        yield store
    finally:
        await store.stop()


@asynccontextmanager
async def store_on(database_url: str, size: int,
                   make: Callable[[asyncpg.Pool], StoreT]) -> AsyncIterator[StoreT]:
    """A running store of ``make`` on a pool of its own, both closed on the way out."""
    pool = await create_pool(database_url, size=size)
    try:
        async with started(make(pool)) as store:
            yield store
    finally:
        await pool.close()


def assert_error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The response is an error envelope of this status and type; returns its ``error``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    return error


# --- agents, sessions, messages ------------------------------------------------------------------


async def create_agent(api: Api, key: str, **body: Any) -> str:
    """POST /v1/agents with exactly ``body``: the new agent's id."""
    response = await api.request("POST", "/v1/agents", key, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def agent(api: Api, key: str, script: list[dict[str, Any]], **extra: Any) -> str:
    """An agent on the scripted model, offering ``lookup`` (``extra`` overrides any field)."""
    return await create_agent(api, key, **{
        "name": "a", "model": {"adapter": "scripted", "script": script}, "tools": [LOOKUP],
        **extra})


async def session(api: Api, key: str, agent_id: str) -> str:
    response = await api.request("POST", "/v1/sessions", key, json={"agent_id": agent_id})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def say(api: Api, key: str, sid: str, text: str, mode: str | None = None) -> Any:
    path = f"/v1/sessions/{sid}/messages" + (f"?mode={mode}" if mode else "")
    return await api.request("POST", path, key, json={"content": text})


async def settle(api: Api, key: str, sid: str, status: str, within: float = 30) -> dict[str, Any]:
    """The session once it reaches ``status`` with nothing queued."""
    async with asyncio.timeout(within):
        while True:
            got: dict[str, Any] = (await api.request("GET", f"/v1/sessions/{sid}", key)).json()
            if got["status"] == status and not got["queued_turn_ids"]:
                return got
            await asyncio.sleep(0.02)


async def log(api: Api, key: str, sid: str) -> list[dict[str, Any]]:
    page = await api.request("GET", f"/v1/sessions/{sid}/events?limit=500", key)
    return list(page.json()["data"])


def seq_of(events: list[dict[str, Any]], type_: str, nth: int = 0) -> int:
    """The seq of the ``nth`` event of this type."""
    return int([e["seq"] for e in events if e["type"] == type_][nth])


async def approved_client_call(api: Api) -> tuple[str, str, list[dict[str, Any]]]:
    """A finished turn: the model calls `lookup` (approval needed, then the client answers),
    then replies. Returns the key, the session id and its log."""
    key = await api.key(await api.tenant(), "member")
    script = [{"text": "let me look", "tool_calls": [{"name": "lookup", "input": {"word": "x"}}]},
              {"text": "found it"}]
    sid = await session(api, key, await agent(
        api, key, script, tools=[{**LOOKUP, "requires_approval": True}]))
    await say(api, key, sid, "look up x")
    await settle(api, key, sid, "requires_action")
    [approval] = (await api.request("GET", f"/v1/approvals?session_id={sid}", key)).json()["data"]
    decided = await api.request("POST", f"/v1/approvals/{approval['id']}", key,
                                json={"decision": "approve", "reason": "fine"})
    assert decided.status_code == 202
    await settle(api, key, sid, "requires_action")
    answered = await api.request("POST", f"/v1/sessions/{sid}/tool_results", key, json={
        "results": [{"tool_use_id": "toolu_0_0", "content": "x is a letter"}]})
    assert answered.status_code == 202, answered.text
    await settle(api, key, sid, "idle")
    return key, sid, await log(api, key, sid)


async def cut_by_a_dead_worker(api: Api) -> tuple[str, str]:
    """A session whose turn a worker took, streamed part of a message in ("compl" of the
    script's "complete reply"), and died in: its lease just expired, and the live worker runs
    again (it closes the message as interrupted and calls the model again). Returns the key
    and the session id."""
    from engine.events import MessageDelta, MessageStart, TurnStarted, new_event

    engine = api.app.state.engine
    key = await api.key(tenant := await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "complete reply"}]))
    await engine.worker.stop()  # no live worker while we stage the dead one's work
    sent = (await say(api, key, sid, "hi")).json()["event"]["data"]["turn_id"]
    dead = [new_event(TurnStarted(turn_id=sent, worker="wrk_dead")),
            new_event(MessageStart(turn_id=sent, message_id="msg_dead", model="scripted")),
            new_event(MessageDelta(message_id="msg_dead", text="compl"))]
    await engine.store.append(sid, dead, tenant_id=tenant, stream_type="session")
    async with engine._pool.acquire() as conn:  # the dead worker's lease, just expired
        async with asyncio.timeout(30):
            while not await conn.fetchval("SELECT count(*) FROM session_runs WHERE"  # noqa: ASYNC110
                                          " session_id = $1 AND wanted_position > 0", sid):
                await asyncio.sleep(0.02)
        await conn.execute("UPDATE session_runs SET lease_owner = 'wrk_dead',"
                           " lease_expires = now() - interval '1 second'"
                           " WHERE session_id = $1", sid)
    engine.worker.start()
    return key, sid


# --- boards and tasks ----------------------------------------------------------------------------


async def new_board(api: Api, key: str, name: str = "Launch") -> str:
    response = await api.request("POST", "/v1/boards", key, json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_task(api: Api, key: str, board_id: str, **fields: Any) -> dict[str, Any]:
    response = await api.request("POST", "/v1/tasks", key,
                                 json={"board_id": board_id, "title": "t", **fields})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def caught_up(api: Api, name: str) -> None:
    """Wait until projection ``name`` has checkpointed the head of the log."""
    engine = api.app.state.engine
    head = await engine.store.head()
    async with engine._pool.acquire() as conn, asyncio.timeout(30):
        while (await conn.fetchval("SELECT position FROM projection_checkpoints"  # noqa: ASYNC110
                                   " WHERE name = $1", name) or 0) < head:
            await asyncio.sleep(0.02)


# --- over a real socket --------------------------------------------------------------------------


async def events_from(stream: AsyncIterator[Frame], count: int) -> list[Frame]:
    """The next ``count`` frames with an id (comments and retry lines skipped)."""
    got: list[Frame] = []
    async with asyncio.timeout(30):
        async for frame in stream:
            if frame.id is not None:
                got.append(frame)
                if len(got) == count:
                    return got
    return got


async def say_many(live: Live, key: str, sid: str, count: int, pause: float = 0) -> None:
    """``count`` messages "live 0", "live 1", ..., ``pause`` seconds apart."""
    for index in range(count):
        await live.say(key, sid, f"live {index}")
        if pause:
            await asyncio.sleep(pause)
