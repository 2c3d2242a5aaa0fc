"""The projection runner: one active runner per projection across engines, checkpoints that
follow the log, and the lag / rate / active metrics."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.engine import Engine
from engine.errors import InvalidRequest
from engine.events import NewEvent
from engine.projections import runner as runner_module
from engine.projections.runner import LogPages, reached, require
from engine.settings import Settings


def _metric(engine: Engine, name: str, projection: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, {"projection": projection})
    return 0.0 if value is None else float(value)


async def _checkpoint(engine: Engine, name: str) -> int:
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        return int(await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", name) or 0)


async def test_one_engine_runs_each_projection_and_reports_its_lag(
    engine: Engine, settings: Settings,
) -> None:
    events = [NewEvent(type="thing_happened", data=b"{}") for _ in range(30)]
    await engine.store.append("s1", events, tenant_id="ten_a", stream_type="session")
    head = await engine.store.head()
    async with asyncio.timeout(30):
        while await _checkpoint(engine, "session_runs") < head:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert _metric(engine, "spool_projection_active", "session_runs") == 1
    assert _metric(engine, "spool_projection_lag_events", "session_runs") == 0
    assert _metric(engine, "spool_projection_events_total", "session_runs") >= 30

    async with Engine(settings) as second:  # same database: it stands by
        await asyncio.sleep(1.5)
        assert _metric(second, "spool_projection_active", "session_runs") == 0
        await engine.store.append("s1", events[:1], tenant_id="ten_a", stream_type="session")
        head = await engine.store.head()
        async with asyncio.timeout(30):
            while await _checkpoint(engine, "session_runs") < head:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert _metric(second, "spool_projection_events_total", "session_runs") == 0


async def test_runners_share_the_pages_they_read(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "GATHER_SECONDS", 60.0)  # short pages shared a minute
    events = [NewEvent(type="thing_happened", data=b"{}") for _ in range(5)]
    await engine.store.append("s2", events, tenant_id="ten_a", stream_type="session")
    pages = LogPages()
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        # read at once, as runners woken by one commit do: one read, the same page for both
        a, b = await asyncio.gather(pages.read(first, after=0, limit=1000),
                                    pages.read(second, after=0, limit=1000))
        assert a is b and [e.position for _, e in a] == [1, 2, 3, 4, 5]
        assert await pages.read(second, after=0, limit=1000) is a  # kept
        assert await pages.read(second, after=0, limit=2) is not a  # too long for that limit
        # an empty page is not kept: what is appended later is read
        assert await pages.read(first, after=5, limit=1000) == []
        await engine.store.append("s2", events[:1], tenant_id="ten_a", stream_type="session")
        assert [e.position for _, e in await pages.read(first, after=5, limit=1000)] == [6]
        # a reader cancelled mid-read leaves the page to those waiting: they read it themselves
        blocker = await asyncpg.connect(database_url)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                reader = asyncio.create_task(pages.read(first, after=1, limit=1000))
                await asyncio.sleep(0.2)  # its read waits on the lock
                waiter = asyncio.create_task(pages.read(second, after=1, limit=1000))
                await asyncio.sleep(0.2)
                assert not waiter.done()
                reader.cancel()
                await asyncio.sleep(0.2)
                assert reader.cancelled() and not waiter.done()  # reading for itself now
        finally:
            await blocker.close()
        assert [e.position for _, e in await waiter] == [2, 3, 4, 5, 6]
    finally:
        await first.close(timeout=2)
        await second.close()


async def test_readers_on_a_standby_engine_are_woken_as_the_active_runner_moves(
    engine: Engine, settings: Settings,
) -> None:
    async with Engine(settings) as second:  # stands by: `engine` runs every projection
        standby = next(r for r in second._projections if r.projection.name == "session_runs")
        assert not standby.active
        events = [NewEvent(type="thing_happened", data=b"{}") for _ in range(3)]
        await engine.store.append("s3", events, tenant_id="ten_a", stream_type="session")
        head = await engine.store.head()
        assert second._pool is not None
        # read-your-writes through the standby: it follows the checkpoint `engine` moves
        assert await reached(second._pool, "session_runs", head, 30)
        assert standby.progress.position >= head and standby.progress.waiting == 0
        # a position past the head is no write's
        with pytest.raises(InvalidRequest) as past:
            await require(second._pool, "session_runs", head + 1, 30)
        assert past.value.details == {"field": "min_position"}


async def _caught_up(engine: Engine, name: str) -> None:
    head = await engine.store.head()
    async with asyncio.timeout(30):
        while await _checkpoint(engine, name) < head:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_pages_that_touch_nothing_of_a_view_move_its_checkpoint(engine: Engine) -> None:
    """The tasks view touches only task and board streams: session pages pass over it by its
    checkpoint alone. A checkpoint moved behind the runner's back (as a rebuild moves it)
    sends the next page the careful way, from where the checkpoint stands."""
    events = [NewEvent(type="thing_happened", data=b"{}") for _ in range(10)]
    for _ in range(3):
        await engine.store.append("s3", events, tenant_id="ten_a", stream_type="session")
        await _caught_up(engine, "tasks")
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.execute("UPDATE projection_checkpoints SET position = 5 WHERE name = 'tasks'")
    await engine.store.append("s3", events, tenant_id="ten_a", stream_type="session")
    await _caught_up(engine, "tasks")
    assert await _checkpoint(engine, "tasks") == await engine.store.head() == 40


def _count_pages(engine: Engine, name: str) -> list[int]:
    """The sizes of the pages the runner of ``name`` applies from now on."""
    runner = next(r for r in engine._projections if r.projection.name == name)
    sizes: list[int] = []
    report = runner._report_lag

    def counting(lag: int, applied: int = 0) -> None:
        if applied:
            sizes.append(applied)
        report(lag, applied)

    runner._report_lag = counting  # type: ignore[method-assign]
    return sizes


async def test_a_runner_no_reader_waits_on_gathers_small_commits_into_pages(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a small page that caught up, the runner lets the log fill before reading on:
    twenty commits made while it gathers are applied as one page (a page costs about five
    round trips whatever its size). The gathering is set long, and a reader ends it."""
    monkeypatch.setattr(runner_module, "GATHER_SECONDS", 60.0)
    event = [NewEvent(type="thing_happened", data=b"{}")]
    await _caught_up(engine, "session_runs")
    sizes = _count_pages(engine, "session_runs")
    await engine.store.append("s4", event, tenant_id="ten_a", stream_type="session")
    await _caught_up(engine, "session_runs")  # one page of one: the runner gathers now
    for _ in range(20):
        [last] = await engine.store.append("s4", event, tenant_id="ten_a",
                                           stream_type="session")
    assert engine._pool is not None
    assert await reached(engine._pool, "session_runs", last.position, 30)
    assert sizes == [1, 20]


async def test_a_waiting_reader_cuts_the_gathering_short(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read-your-writes never waits for a gathering runner: with a gathering time of a minute,
    a reader of a fresh write is answered within its 20 s."""
    monkeypatch.setattr(runner_module, "GATHER_SECONDS", 60.0)
    event = [NewEvent(type="thing_happened", data=b"{}")]
    await engine.store.append("s5", event, tenant_id="ten_a", stream_type="session")
    await _caught_up(engine, "session_runs")  # one small page: the runner gathers now
    [written] = await engine.store.append("s5", event, tenant_id="ten_a", stream_type="session")
    assert engine._pool is not None
    assert await reached(engine._pool, "session_runs", written.position, 20)


async def test_a_short_page_read_a_while_ago_is_read_again_with_what_came_since(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runner that comes to a page later than the others (a slower view, or one that
    gathered) gets what was committed since in the same page, not the short page they read."""
    monkeypatch.setattr(runner_module, "GATHER_SECONDS", 0.0)
    event = [NewEvent(type="thing_happened", data=b"{}")]
    await engine.store.append("s6", event * 2, tenant_id="ten_a", stream_type="session")
    pages = LogPages()
    conn = await asyncpg.connect(database_url)
    try:
        first = await pages.read(conn, after=0, limit=1000)
        full = await pages.read(conn, after=0, limit=2)
        assert await pages.read(conn, after=0, limit=2) is full  # as long as asked: shared
        await engine.store.append("s6", event, tenant_id="ten_a", stream_type="session")
        later = await pages.read(conn, after=0, limit=1000)
        assert [e.position for _, e in first] == [1, 2]
        assert [e.position for _, e in later] == [1, 2, 3]
    finally:
        await conn.close()
