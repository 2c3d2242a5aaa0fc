"""``?min_position=`` (read-your-writes on views): a position past the log's head is 400 at once;
a reader waiting for a view holds no pool connection and is woken by the projection runner when
the view moves; a view that does not catch up in time is 503."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx

from api.app import ROUTES
from api.openapi import operations
from engine.engine import Engine
from tests.api.conftest import Api
from tests.helpers import assert_error

# Every operation that takes ?min_position=, from the table the OpenAPI document is built from.
OPERATIONS = operations(ROUTES)
VIEW_READS = sorted(path for (method, path), op in OPERATIONS.items()
                    if method == "GET" and any(p.name == "min_position" for p in op.query))


@contextlib.asynccontextmanager
async def views_paused(database_url: str) -> AsyncIterator[None]:
    """No projection moves while the block runs: their checkpoints are locked (the runners
    wait on the lock), and so is any query that reads a checkpoint."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE projection_checkpoints IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def _setup(api: Api) -> tuple[str, dict[str, str], int]:
    """An owner key, values for the view routes' path parameters, and the log's head."""
    key = await api.key(await api.tenant())
    agent = await api.request("POST", "/v1/agents", key, json={"name": "a"})
    board = await api.request("POST", "/v1/boards", key, json={"name": "b"})
    budget = await api.request("PUT", "/v1/budgets/tenant", key,
                               json={"limits": {"total": {"tokens": 10}}})
    assert budget.status_code == 200, budget.text
    params = {"agent_id": agent.json()["id"], "board_id": board.json()["id"], "scope": "tenant"}
    head = await api.app.state.engine.store.head()
    return key, params, head


def _filled(path: str, params: dict[str, str]) -> str:
    return path.format(**params)


def _position(response: httpx.Response) -> int:
    return int(response.headers["spool-position"])


async def test_a_position_past_the_head_is_400_at_once(api: Api) -> None:
    key, params, head = await _setup(api)
    assert len(VIEW_READS) == 9  # agents (2), sessions, boards (2), tasks, budgets (2), usage
    for path in VIEW_READS:
        url = _filled(path, params)
        async with asyncio.timeout(30):  # (it waited 5 s, then answered 503)
            response = await api.request("GET", f"{url}?min_position={head + 1}", key)
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": "min_position"}, path
        assert str(head) in error["message"]
        # the head itself is no error: it is a write's position
        assert (await api.request("GET", f"{url}?min_position={head}", key)).status_code == 200


async def test_waiting_readers_hold_no_connection_and_wake_when_the_view_moves(
    api: Api, database_url: str,
) -> None:
    key, _, _ = await _setup(api)
    other = await api.key(await api.tenant("other"))
    board = (await api.request("POST", "/v1/boards", other, json={"name": "theirs"})).json()
    engine: Engine = api.app.state.engine
    readers = engine.settings.db_pool_size * 2  # more than the pool has connections
    async with views_paused(database_url):
        made = await api.request("POST", "/v1/boards", key, json={"name": "new"})
        waiting = [asyncio.create_task(api.request(
            "GET", f"/v1/boards?min_position={_position(made)}", key)) for _ in range(readers)]

        async def all_waiting() -> bool:
            return sum(r.progress.waiting for r in engine._projections) >= readers

        async with asyncio.timeout(30):
            while not await all_waiting():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        # Another tenant's read gets a connection at once: no waiting reader holds one (a
        # checkpoint read would be stuck behind the lock with it).
        async with asyncio.timeout(30):
            theirs = await api.request("GET", f"/v1/boards/{board['id']}", other)
        assert theirs.status_code == 200, theirs.text
        assert not any(task.done() for task in waiting)
    async with asyncio.timeout(30):  # the runner applies the write and wakes them all
        answers = await asyncio.gather(*waiting)
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert made.json()["id"] in [b["id"] for b in answer.json()["data"]]


async def test_a_view_that_does_not_catch_up_in_time_is_503(
    api: Api, database_url: str,
) -> None:
    key, params, _ = await _setup(api)
    engine: Engine = api.app.state.engine
    for service in (engine.agents, engine.session_summaries, engine.boards, engine.tasks):
        service.catch_up_seconds = 0.2
    engine.budgets.wait_seconds = 0.2
    async with views_paused(database_url):
        made = await api.request("POST", "/v1/boards", key, json={"name": "new"})
        for path in VIEW_READS:
            response = await api.request(
                "GET", f"{_filled(path, params)}?min_position={_position(made)}", key)
            error = assert_error(response, 503, "unavailable")
            assert response.headers["retry-after"] == "1"
            assert error["details"] == {"field": "min_position"}, path
