"""The fan-out at engine level, against real Postgres and Redis: an unpublished tail (a process
that died between commit and publish) is delivered and relayed, an out-of-order publish is
filled from Postgres, and a subscriber that falls behind is cut off, freed, and can resume."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from engine.engine import Engine
from engine.log.dispatch import CutOff, Dispatcher
from engine.log.fanout import LOG_KEY, Publisher, entry_id
from engine.log.live import LiveEvent
from engine.log.store import Committed, EventStore
from engine.log.tail import session_tail
from engine.metrics import Metrics
from tests.helpers_log import (
    append,
    new_session,
    nothing_more,
    routed,
    sample_of,
    settled,
    take,
)


def sample(engine: Engine, name: str) -> float:
    return sample_of(engine.metrics, name)


async def test_an_unpublished_tail_is_delivered_and_relayed_once(
    engine: Engine, own_store: EventStore, redis_client: redis.Redis
) -> None:
    tenant_id, session_id = await new_session(engine)
    await settled(engine)
    subscription = engine.fanout.subscribe_stream(session_id)
    relayed_before = sample(engine, "spool_events_relayed_total")

    events = await append(own_store, tenant_id, session_id, 5)
    first, last = entry_id(events[0].position), entry_id(events[-1].position)
    assert await redis_client.xrange(LOG_KEY, min=first, max=last) == []  # nobody published

    # The dispatcher's idle check finds the tail in Postgres (within about a second).
    got = await take(subscription, 5)
    assert routed(got) == routed(events)
    assert [g.envelope for g in got] == [LiveEvent.from_event(tenant_id, e).envelope
                                         for e in events]

    # The relay publishes what the stream lacks, once it has lacked it for a whole interval.
    async with asyncio.timeout(30):
        while len(entries := await redis_client.xrange(LOG_KEY, min=first, max=last)) < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert [raw_id.decode() for raw_id, _ in entries] == [entry_id(e.position) for e in events]
    assert sample(engine, "spool_events_relayed_total") - relayed_before == 5
    # The relayed copies reach the dispatcher, which has them already: no duplicate.
    await nothing_more(subscription, 0.5)

    # Republishing the same batch is refused entry by entry: a no-op.
    length = await redis_client.xlen(LOG_KEY)
    batch = [Committed(tenant_id, e) for e in events]
    assert engine.publisher is not None
    assert await engine.publisher.publish(batch) == 0
    assert await redis_client.xlen(LOG_KEY) == length
    assert await redis_client.xrange(LOG_KEY, min=first, max=last) == entries
    await nothing_more(subscription)
    subscription.close()


async def test_an_out_of_order_publish_is_filled_from_postgres(
    engine: Engine, own_store: EventStore, redis_client: redis.Redis
) -> None:
    tenant_id, session_id = await new_session(engine)
    await settled(engine)
    # A dispatcher that never looks at Postgres on its own (idle check of 60 s): whatever it
    # delivers came through Redis or through filling a hole it saw there.
    metrics = Metrics()
    dispatcher = Dispatcher(redis_client, engine.store, metrics, idle_check=60)
    await dispatcher.start()
    try:
        subscription = dispatcher.subscribe_stream(session_id)
        engine_subscription = engine.fanout.subscribe_stream(session_id)
        earlier = await append(own_store, tenant_id, session_id, 3)
        later = await append(own_store, tenant_id, session_id, 4)
        publisher = Publisher(redis_client, engine.store, Metrics())  # publish() only
        assert await publisher.publish([(tenant_id, e) for e in later]) == 4
        assert await publisher.publish([(tenant_id, e) for e in earlier]) == 0  # refused

        expected = routed([*earlier, *later])
        assert routed(await take(subscription, 7)) == expected
        assert sample_of(metrics, "spool_fanout_gaps_filled_total") >= 1
        assert routed(await take(engine_subscription, 7)) == expected
        await nothing_more(subscription)
        await nothing_more(engine_subscription, 0.1)
        subscription.close()
        engine_subscription.close()
    finally:
        await dispatcher.stop()


async def test_a_subscriber_that_falls_behind_is_cut_off_freed_and_can_resume(
    engine: Engine,
) -> None:
    tenant_id, session_id = await new_session(engine)
    await settled(engine)
    dispatcher = engine.fanout
    dispatcher.capacity = 4
    cut_before = sample(engine, "spool_sse_cut_off_total")
    subscription = dispatcher.subscribe_stream(session_id)
    assert dispatcher.subscriber_count == 1

    first = await append(engine.store, tenant_id, session_id, 2)
    received = await take(subscription, 2)
    assert routed(received) == routed(first)

    # Stop reading; 12 more events arrive one append at a time.
    for _ in range(12):
        await append(engine.store, tenant_id, session_id, 1)
    await settled(engine)
    assert subscription.cut_off
    assert len(subscription._items) == 0  # the buffer is dropped at once, not when read
    assert sample(engine, "spool_sse_cut_off_total") - cut_before == 1
    # Unsubscribed at the cut-off, before its reader comes back (it may never).
    assert dispatcher.subscriber_count == 0
    assert sample(engine, "spool_sse_connected_clients") == 0
    with pytest.raises(CutOff):
        await subscription.next_batch()
    subscription.close()  # idempotent
    assert dispatcher.subscriber_count == 0
    assert sample(engine, "spool_sse_connected_clients") == 0

    # Resume from the last event received: everything after it, in order, exactly once.
    dispatcher.capacity = 1000
    tail = session_tail(engine.store, dispatcher, tenant_id=tenant_id, stream_id=session_id,
                        after=received[-1].seq)
    resumed: list[LiveEvent] = []
    async with asyncio.timeout(30):
        async for batch in tail:
            resumed.extend(batch)
            if len(resumed) == 12:  # then one live event after the replay
                await append(engine.store, tenant_id, session_id, 1)
            if len(resumed) >= 13:
                break
    await tail.aclose()
    assert [e.seq for e in resumed] == list(range(received[-1].seq + 1, received[-1].seq + 14))
    assert dispatcher.subscriber_count == 0


async def test_a_burst_larger_than_the_buffer_cuts_off_even_an_eager_reader(
    engine: Engine,
) -> None:
    """One commit of more events than the buffer holds reaches the subscriber in one go."""
    tenant_id, session_id = await new_session(engine)
    await settled(engine)
    engine.fanout.capacity = 5
    tail = session_tail(engine.store, engine.fanout, tenant_id=tenant_id, stream_id=session_id,
                        after=1)
    assert engine.fanout.subscriber_count == 0  # subscribes on first iteration
    reader = asyncio.ensure_future(anext(tail))
    await asyncio.sleep(0.05)
    assert engine.fanout.subscriber_count == 1
    await append(engine.store, tenant_id, session_id, 50)
    got: list[LiveEvent] = []
    with pytest.raises(CutOff):
        got.extend(await reader)
        async with asyncio.timeout(30):
            async for batch in tail:
                got.extend(batch)
    assert len(got) < 50
    assert engine.fanout.subscriber_count == 0
