"""engine/log/tail.py on real Postgres: a tail replays what is stored after its cursor, then
goes live, with no gap and no duplicate at the hand-over. The session tail fills a hole in what
it is handed from Postgres, drops copies, passes keepalives on and ends after
``session_archived``; the tenant tail filters by type and stream type, replayed and live alike,
and drops copies by position. Most tests hand the tail's subscription its live events
themselves (a dispatcher that is never started), so what reaches it is exactly what the test
says; one runs on the engine's dispatcher across a replay of several pages. (The same over a
real socket, with resumes and faults, is tests/api/test_sse*.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis

from engine.engine import Engine
from engine.events import BoardCreated, Event, NewEvent, SessionArchived, new_event
from engine.ids import new_id
from engine.log.dispatch import Dispatcher, Subscription
from engine.log.live import LiveEvent
from engine.log.tail import _read_ahead, session_tail, tenant_tail
from engine.metrics import Metrics
from tests.helpers_log import append, new_session, routed, sample_of, settled


class Handing(Dispatcher):
    """Never started: the test hands the tail's subscription its live events."""

    subscription: Subscription

    def subscribe_stream(self, stream_id: str) -> Subscription:
        self.subscription = super().subscribe_stream(stream_id)
        return self.subscription

    def subscribe_tenant(
        self, tenant_id: str, accepts: Callable[[LiveEvent], bool] | None = None
    ) -> Subscription:
        self.subscription = super().subscribe_tenant(tenant_id, accepts)
        return self.subscription

    def hand(self, tenant_id: str, *events: Event) -> None:
        for event in events:
            self.subscription.offer(LiveEvent.from_event(tenant_id, event))


@pytest.fixture
def handing(engine: Engine, redis_client: redis.Redis) -> Handing:
    return Handing(redis_client, engine.store, Metrics())


async def following(tail: AsyncIterator[list[LiveEvent]]) -> list[LiveEvent]:
    async with asyncio.timeout(30):
        return await anext(tail)


async def archive(engine: Engine, tenant_id: str, session_id: str) -> list[Event]:
    """``session_archived`` appended as it is (the session has turns queued: the engine would
    refuse to archive it)."""
    return await engine.store.append(session_id, [new_event(SessionArchived())],
                                     tenant_id=tenant_id, stream_type="session")


def seqs(events: list[LiveEvent]) -> list[int]:
    return [e.seq for e in events]


async def test_a_session_tail_replays_fills_holes_drops_copies_and_ends_when_archived(
    engine: Engine, handing: Handing,
) -> None:
    tenant_id, session_id = await new_session(engine)  # seq 1: session_created
    await append(engine.store, tenant_id, session_id, 2)
    tail = session_tail(engine.store, handing, tenant_id=tenant_id, stream_id=session_id,
                        after=1)
    assert seqs(await following(tail)) == [2, 3]  # replayed
    assert handing.subscriber_count == 1

    later = await append(engine.store, tenant_id, session_id, 3)  # seqs 4, 5, 6
    handing.hand(tenant_id, later[-1])  # 4 and 5 never reach it live: read from Postgres
    assert seqs(await following(tail)) == [4, 5, 6]
    assert sample_of(handing.metrics, "spool_sse_replayed_events_sum") == 2
    assert sample_of(handing.metrics, "spool_fanout_gaps_filled_total") == 1

    [seventh] = await append(engine.store, tenant_id, session_id, 1)
    handing.hand(tenant_id, later[1], later[2], seventh)  # two copies, then seq 7
    assert seqs(await following(tail)) == [7]
    assert sample_of(handing.metrics, "spool_sse_duplicates_suppressed_total") == 2

    handing.subscription.tick()  # the end of the interval the events came in
    handing.subscription.tick()  # then a quiet one: the keepalive is passed on
    assert await following(tail) == []

    [archived] = await archive(engine, tenant_id, session_id)
    handing.hand(tenant_id, archived)
    assert [e.type for e in await following(tail)] == ["session_archived"]
    with pytest.raises(StopAsyncIteration):  # nothing can follow it
        await following(tail)
    assert handing.subscriber_count == 0


async def test_a_tail_of_an_archived_session_replays_to_the_end_and_stops(
    engine: Engine, handing: Handing,
) -> None:
    tenant_id, session_id = await new_session(engine)
    await append(engine.store, tenant_id, session_id, 2)
    await archive(engine, tenant_id, session_id)
    tail = session_tail(engine.store, handing, tenant_id=tenant_id, stream_id=session_id,
                        after=0)
    got = await following(tail)
    assert seqs(got) == [1, 2, 3, 4]
    assert got[-1].type == "session_archived"
    with pytest.raises(StopAsyncIteration):
        await following(tail)
    assert handing.subscriber_count == 0


async def test_a_tail_that_closes_early_unsubscribes(engine: Engine, handing: Handing) -> None:
    tenant_id, session_id = await new_session(engine)
    tail = session_tail(engine.store, handing, tenant_id=tenant_id, stream_id=session_id,
                        after=0)
    assert seqs(await following(tail)) == [1]
    assert handing.subscriber_count == 1
    await tail.aclose()
    assert handing.subscriber_count == 0


async def test_what_is_committed_during_a_long_replay_comes_once(engine: Engine) -> None:
    """On the engine's dispatcher: events committed while the tail is between replayed pages
    are both in a later page and in its subscription; each is delivered once. (The page after
    the first is read ahead as the first is delivered; the one after that is read later.)"""
    tenant_id, session_id = await new_session(engine)
    for _ in range(10):
        await append(engine.store, tenant_id, session_id, 220)  # seqs 2..2201
    await settled(engine)  # dispatched before the tail subscribes: replayed only
    suppressed = sample_of(engine.metrics, "spool_sse_duplicates_suppressed_total")
    tail = session_tail(engine.store, engine.fanout, tenant_id=tenant_id, stream_id=session_id,
                        after=0)
    got = await following(tail)
    assert seqs(got) == list(range(1, 1001))  # one page, and the tail is subscribed
    during = await append(engine.store, tenant_id, session_id, 5)  # seqs 2202..2206
    await settled(engine)  # ... so they are in the subscription's buffer too
    async with asyncio.timeout(30):
        while len(got) < 2206:
            got.extend(await anext(tail))
    [marker] = await append(engine.store, tenant_id, session_id, 1)
    async with asyncio.timeout(30):
        while got[-1].seq < marker.seq:
            got.extend(await anext(tail))
    await tail.aclose()
    assert seqs(got) == list(range(1, marker.seq + 1))
    assert sample_of(engine.metrics, "spool_sse_duplicates_suppressed_total") - suppressed == (
        len(during))


async def test_a_tenant_tail_filters_replayed_and_live_events_and_skips_other_tenants(
    engine: Engine,
) -> None:
    tenant_id, first = await new_session(engine)
    other_tenant, elsewhere = await new_session(engine)
    replayed = await append(engine.store, tenant_id, first, 2)
    await append(engine.store, other_tenant, elsewhere, 1)
    tail = tenant_tail(engine.store, engine.fanout, tenant_id=tenant_id, after=0,
                       types=["user_message"])
    assert routed(await following(tail)) == routed(replayed)  # not session_created

    second = (await engine.sessions.create(tenant_id))[0].id  # session_created: filtered out
    live = await append(engine.store, tenant_id, second, 1)
    await append(engine.store, other_tenant, elsewhere, 1)  # another tenant's
    live += await append(engine.store, tenant_id, first, 1)
    got: list[LiveEvent] = []
    async with asyncio.timeout(30):
        while len(got) < len(live):
            got.extend(await anext(tail))
    await tail.aclose()
    assert routed(got) == routed(live)
    assert engine.fanout.subscriber_count == 0


def board() -> list[NewEvent]:
    return [new_event(BoardCreated(name="b", description=None))]


async def test_a_tenant_tail_by_stream_type_and_its_copies_dropped_by_position(
    engine: Engine, handing: Handing,
) -> None:
    tenant_id, session_id = await new_session(engine)
    [created] = await engine.store.append(new_id("brd"), board(), tenant_id=tenant_id,
                                          stream_type="board")
    await append(engine.store, tenant_id, session_id, 1)
    tail = tenant_tail(engine.store, handing, tenant_id=tenant_id, after=0, stream_type="board")
    assert routed(await following(tail)) == routed([created])
    # The filter handed to the dispatcher is the same one.
    accepts = handing.subscription.accepts
    assert accepts is not None
    assert accepts(LiveEvent.from_event(tenant_id, created))
    [message] = await append(engine.store, tenant_id, session_id, 1)
    assert not accepts(LiveEvent.from_event(tenant_id, message))

    [renamed] = await engine.store.append(created.stream_id, board(), tenant_id=tenant_id,
                                          stream_type="board")
    handing.hand(tenant_id, created, renamed)  # a copy of the replayed one, then a new one
    assert routed(await following(tail)) == routed([renamed])
    assert sample_of(handing.metrics, "spool_sse_duplicates_suppressed_total") == 1
    handing.subscription.tick()
    handing.subscription.tick()
    assert await following(tail) == []  # the keepalive after a quiet interval
    await tail.aclose()
    assert handing.subscriber_count == 0


async def test_a_replay_reads_the_next_page_while_the_last_is_sent() -> None:
    """_read_ahead asks for page n+1 before the caller takes it, stops at a short page or at
    ``until``, and cancels the read nobody will take."""
    asked: list[int] = []
    blocked = asyncio.Event()

    async def read(after: int) -> list[LiveEvent]:
        asked.append(after)
        if after >= 2500:
            await blocked.wait()  # never set: only cancelling ends it
        count = 1000 if after < 2000 else 300
        return [LiveEvent.create(n, "ten_a", "s", "session", n, "t", b"{}")
                for n in range(after + 1, after + count + 1)]

    pages = _read_ahead(read, 0, lambda event: event.seq)
    first = await anext(pages)
    await asyncio.sleep(0)
    assert (first[-1].seq, asked) == (1000, [0, 1000])  # page 2 asked for already
    assert [page[-1].seq async for page in pages] == [2000, 2300]
    assert asked == [0, 1000, 2000]  # a short page ends it

    asked.clear()
    until = [page[-1].seq async for page in _read_ahead(read, 0, lambda e: e.seq, until=1000)]
    assert (until, asked) == ([1000], [0])
    assert [page async for page in _read_ahead(read, 5, lambda e: e.seq, until=5)] == []

    asked.clear()
    pages = _read_ahead(read, 1500, lambda event: event.seq)
    await anext(pages)
    await asyncio.sleep(0)
    assert asked == [1500, 2500]  # the read of 2500 waits forever ...
    await pages.aclose()  # ... until the caller leaves and it is cancelled
    await asyncio.sleep(0)
    assert all(task.get_coro().__name__ != "read" for task in asyncio.all_tasks())
