"""engine/log/dispatch.py: a subscription's buffer, batches, keepalives and cut-off, handed
events directly; and a running dispatcher on real Postgres and Redis, which starts at the log
head, routes each event to its stream's and its tenant's subscribers only (through their
filter), wakes its watchers, keeps delivering from Postgres while Redis cannot be reached, and
stops even while it is blocked in a read. (Filling holes, the idle check and a cut-off under a
real flood are in test_fanout.py.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as redis

from engine.engine import Engine
from engine.log.dispatch import CutOff, Dispatcher
from engine.log.live import LiveEvent
from engine.log.store import EventStore
from engine.metrics import Metrics
from tests.helpers_log import append, new_session, routed, sample_of, settled, take


def live(position: int, seq: int, stream_id: str = "ses_a", tenant_id: str = "ten_a",
         type_: str = "user_message") -> LiveEvent:
    return LiveEvent.create(position, tenant_id, stream_id, "session", seq, type_, b"{}")


@pytest.fixture
async def idle(engine: Engine, redis_client: redis.Redis) -> Dispatcher:
    """A dispatcher that is never started: the tests hand its subscriptions events."""
    return Dispatcher(redis_client, engine.store, Metrics(), capacity=3)


@pytest.fixture
async def running(engine: Engine, redis_client: redis.Redis) -> AsyncIterator[Dispatcher]:
    """A dispatcher of its own (own metrics) on the engine's store and Redis."""
    dispatcher = Dispatcher(redis_client, engine.store, Metrics())
    await dispatcher.start()
    yield dispatcher
    await dispatcher.stop()


# --- a subscription -----------------------------------------------------------------------------


async def test_a_batch_is_everything_buffered_in_order_then_it_waits(idle: Dispatcher) -> None:
    subscription = idle.subscribe_stream("ses_a")
    offered = [live(1, 1), live(2, 2), live(3, 3)]
    for event in offered:
        subscription.offer(event)
    assert await subscription.next_batch() == offered

    waiting = asyncio.ensure_future(subscription.next_batch())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()  # an empty buffer waits for the next event
    subscription.offer(live(4, 4))
    async with asyncio.timeout(30):
        assert await waiting == [live(4, 4)]


async def test_one_over_the_capacity_cuts_off_drops_the_buffer_and_ignores_the_rest(
    idle: Dispatcher,
) -> None:
    subscription = idle.subscribe_stream("ses_a")
    for position in range(1, 4):  # capacity 3: full, not cut off
        subscription.offer(live(position, position))
    assert not subscription.cut_off
    subscription.offer(live(4, 4))
    assert subscription.cut_off
    assert sample_of(idle.metrics, "spool_sse_cut_off_total") == 1
    subscription.offer(live(5, 5))  # nothing is kept for it any more
    assert sample_of(idle.metrics, "spool_sse_cut_off_total") == 1
    with pytest.raises(CutOff):
        await subscription.next_batch()
    with pytest.raises(CutOff):  # for good: it reconnects, it is not resumed
        await subscription.next_batch()


async def test_a_keepalive_is_an_empty_batch_after_a_whole_quiet_interval(
    idle: Dispatcher,
) -> None:
    subscription = idle.subscribe_stream("ses_a")
    subscription.offer(live(1, 1))
    subscription.tick()  # something was offered in this interval: no keepalive
    assert await subscription.next_batch() == [live(1, 1)]
    waiting = asyncio.ensure_future(subscription.next_batch())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    subscription.tick()  # a whole interval with nothing offered
    async with asyncio.timeout(30):
        assert await waiting == []
    # one keepalive per quiet interval, not one per call
    waiting = asyncio.ensure_future(subscription.next_batch())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    subscription.offer(live(2, 2))
    async with asyncio.timeout(30):
        assert await waiting == [live(2, 2)]


async def test_subscribers_are_counted_and_closing_twice_is_harmless(idle: Dispatcher) -> None:
    stream = idle.subscribe_stream("ses_a")
    tenant = idle.subscribe_tenant("ten_a")
    assert idle.subscriber_count == 2
    assert sample_of(idle.metrics, "spool_sse_connected_clients") == 2
    stream.close()
    stream.close()
    idle.unsubscribe(stream)
    assert idle.subscriber_count == 1
    assert sample_of(idle.metrics, "spool_sse_connected_clients") == 1
    tenant.close()
    assert idle.subscriber_count == 0
    assert sample_of(idle.metrics, "spool_sse_connected_clients") == 0


# --- a running dispatcher -------------------------------------------------------------------------


async def test_it_starts_at_the_head_and_routes_to_stream_tenant_and_filter(
    engine: Engine, redis_client: redis.Redis,
) -> None:
    tenant_a, first = await new_session(engine)
    second = (await engine.sessions.create(tenant_a))[0].id
    tenant_b, other = await new_session(engine)
    await append(engine.store, tenant_a, first, 2)  # before the start: never dispatched
    dispatcher = Dispatcher(redis_client, engine.store, Metrics())
    await dispatcher.start()
    try:
        of_first = dispatcher.subscribe_stream(first)
        of_a = dispatcher.subscribe_tenant(tenant_a)
        second_only = dispatcher.subscribe_tenant(tenant_a, lambda e: e.stream_id == second)
        of_b = dispatcher.subscribe_tenant(tenant_b)

        in_first = await append(engine.store, tenant_a, first, 2)
        in_second = await append(engine.store, tenant_a, second, 3)
        in_other = await append(engine.store, tenant_b, other, 1)
        # Each subscriber's last expected event comes last in the log, so anything it should
        # not have got would have come before it.
        last_of_first = await append(engine.store, tenant_a, first, 1)
        last_of_second = await append(engine.store, tenant_a, second, 1)
        last_of_other = await append(engine.store, tenant_b, other, 1)

        assert routed(await take(of_first, 3)) == routed([*in_first, *last_of_first])
        assert routed(await take(of_a, 7)) == routed(
            [*in_first, *in_second, *last_of_first, *last_of_second])
        assert routed(await take(second_only, 4)) == routed([*in_second, *last_of_second])
        assert routed(await take(of_b, 2)) == routed([*in_other, *last_of_other])
    finally:
        await dispatcher.stop()


async def test_watchers_are_woken_when_events_are_dispatched(
    engine: Engine, running: Dispatcher,
) -> None:
    tenant_id, session_id = await new_session(engine)
    await settled(engine, running)
    moved = asyncio.Event()
    running.watch(moved)
    await append(engine.store, tenant_id, session_id, 1)
    async with asyncio.timeout(30):
        await moved.wait()
    assert running._last == await engine.store.head()


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_without_redis_it_delivers_from_postgres_and_says_it_is_degraded(
    engine: Engine,
) -> None:
    tenant_id, session_id = await new_session(engine)
    unreachable = redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    dispatcher = Dispatcher(unreachable, engine.store, Metrics(), poll_interval=0.01)
    await dispatcher.start()
    try:
        subscription = dispatcher.subscribe_stream(session_id)
        events = [*await append(engine.store, tenant_id, session_id, 3),
                  *await append(engine.store, tenant_id, session_id, 2)]
        assert routed(await take(subscription, 5)) == routed(events)
        assert dispatcher.degraded
    finally:
        await dispatcher.stop()
        await unreachable.aclose()


async def test_it_stops_while_blocked_in_a_read(engine: Engine, redis_client: redis.Redis) -> None:
    dispatcher = Dispatcher(redis_client, engine.store, Metrics(), idle_check=600)
    await dispatcher.start()
    await settled(engine, dispatcher)  # nothing to dispatch: it waits in Redis for 600 s
    async with asyncio.timeout(30):
        await dispatcher.stop()
    assert dispatcher._task is None


async def test_what_this_process_commits_is_dispatched_at_commit_unless_it_skips_a_position(
    engine: Engine, own_store: EventStore, redis_url: str,
) -> None:
    """A batch the dispatcher's own store commits is offered before the append returns, with
    no help from Redis (this dispatcher follows a Redis database nobody publishes to). One
    that does not continue the positions dispatched so far (another process committed in
    between) is left for Redis, which brings everything in position order."""
    quiet = redis.from_url(urlunsplit(urlsplit(redis_url)._replace(path="/9")))
    await quiet.flushdb()
    dispatcher = Dispatcher(quiet, engine.store, Metrics(), idle_check=600)
    await dispatcher.start()
    try:
        tenant_id, session_id = await new_session(engine)
        await settled(engine, dispatcher)
        subscription = dispatcher.subscribe_stream(session_id)
        mine = await append(engine.store, tenant_id, session_id, 3)
        assert routed(list(subscription._items)) == routed(mine)  # offered before it returned
        subscription._items.clear()
        await append(own_store, tenant_id, session_id, 2)  # another process's commit
        await append(engine.store, tenant_id, session_id, 1)  # past the hole: not at commit
        assert not subscription._items
    finally:
        await dispatcher.stop()
        await quiet.aclose()
