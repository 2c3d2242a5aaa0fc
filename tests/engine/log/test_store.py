from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from engine.engine import Engine
from engine.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    StreamClosed,
    StreamMoved,
    Unavailable,
)
from engine.events import NewEvent
from engine.log.live import LiveEvent
from engine.log.store import Committed, EventStore


def ev(n: int = 0, *, id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(type="thing_happened", data=b'{"n": %d}' % n, id=id or uuid.uuid4())


async def append(store: EventStore, stream: str, events: list[NewEvent], **kw: object):  # type: ignore[no-untyped-def]
    return await store.append(stream, events, tenant_id="ten_a", stream_type="session", **kw)


async def test_append_assigns_seq_and_position(engine: Engine) -> None:
    store = engine.store
    first = await append(store, "s1", [ev(1), ev(2)])
    second = await append(store, "s2", [ev(3)])
    third = await append(store, "s1", [ev(4)])
    assert [(e.seq, e.position) for e in first] == [(1, 1), (2, 2)]
    assert [(e.seq, e.position) for e in second] == [(1, 3)]
    assert [(e.seq, e.position) for e in third] == [(3, 4)]
    assert await store.head() == 4
    stored = await store.read_stream("s1", tenant_id="ten_a")
    assert [bytes(e.data) for e in stored] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 4}']


async def test_expected_seq_mismatch_is_conflict_and_writes_nothing(engine: Engine) -> None:
    store = engine.store
    await append(store, "s1", [ev(1)], expected_seq=0)
    with pytest.raises(StreamMoved) as info:  # a Conflict: the same 409 as ever
        await append(store, "s1", [ev(2), ev(3)], expected_seq=0)
    assert isinstance(info.value, Conflict)
    assert info.value.details == {"expected_seq": 0, "actual_seq": 1}
    assert await store.head() == 1
    assert len(await store.read_stream("s1", tenant_id="ten_a")) == 1
    assert [e.seq for e in await append(store, "s1", [ev(4)], expected_seq=1)] == [2]


async def test_retry_with_same_ids_returns_original_and_writes_nothing(engine: Engine) -> None:
    store = engine.store
    events = [ev(1), ev(2)]
    original = await append(store, "s1", events)
    retried = await append(store, "s1", events, expected_seq=0)  # stale expected_seq: still a retry
    assert retried == original
    assert await store.head() == 2


async def test_partly_used_ids_are_a_conflict(engine: Engine) -> None:
    store = engine.store
    used = ev(1)
    await append(store, "s1", [used])
    with pytest.raises(Conflict) as info:
        await append(store, "s1", [used, ev(2)])
    assert not isinstance(info.value, StreamMoved)  # deciding again cannot fix it
    assert await store.head() == 1


async def test_other_tenants_ids_and_streams_are_not_visible(engine: Engine) -> None:
    store = engine.store
    used = ev(1)
    await append(store, "s1", [used])
    with pytest.raises(Conflict):
        await store.append("s2", [used], tenant_id="ten_b", stream_type="session")
    with pytest.raises(NotFound):
        await store.append("s1", [ev(2)], tenant_id="ten_b", stream_type="session")
    with pytest.raises(NotFound):
        await store.read_stream("s1", tenant_id="ten_b")
    assert [e.position for e in await store.read_all(tenant_id="ten_b")] == []


async def test_concurrent_appends_share_transactions_and_stay_contiguous(engine: Engine) -> None:
    store = engine.store
    results = await asyncio.gather(*(append(store, f"s{i % 7}", [ev(i)]) for i in range(300)))
    positions = sorted(e.position for batch in results for e in batch)
    assert positions == list(range(1, 301))
    for stream in range(7):
        seqs = [e.seq for e in await store.read_stream(f"s{stream}", tenant_id="ten_a", limit=1000)]
        assert seqs == list(range(1, len(seqs) + 1))
    batches = engine.metrics.append_batch_size.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < 300, "group commit should put concurrent appends in shared transactions"


async def test_a_crowd_commits_in_two_halves_and_listeners_hear_them_in_order(
    engine: Engine,
) -> None:
    """256 appends queued at once: half commit first and the rest is sent the moment they have
    committed (before their callers are answered); positions and what listeners hear follow
    the order of commit, and a repeated crowd keeps taking turns in halves."""
    store = engine.store
    heard: list[list[int]] = []
    store.on_commit(lambda batch: heard.append([c.event.position for c in batch]))
    for round in range(2):
        results = await asyncio.gather(*(append(store, f"c{i}", [ev(i)]) for i in range(256)))
        first = 256 * round + 1
        assert sorted(e.position for [e] in results) == list(range(first, first + 256))
    assert [len(batch) for batch in heard] == [128, 128, 128, 128]
    assert [p for batch in heard for p in batch] == list(range(1, 513))


async def test_one_bad_request_does_not_fail_its_batch(engine: Engine) -> None:
    store = engine.store
    await append(store, "s1", [ev(0)])
    good = [append(store, f"g{i}", [ev(i)]) for i in range(20)]
    bad = append(store, "s1", [ev(99)], expected_seq=5)
    outcomes = await asyncio.gather(bad, *good, return_exceptions=True)
    assert isinstance(outcomes[0], Conflict)
    assert all(isinstance(o, list) for o in outcomes[1:])
    assert await store.head() == 21


async def test_read_all_filters_and_pages(engine: Engine) -> None:
    store = engine.store
    await append(store, "s1", [ev(1)])
    await store.append("b1", [NewEvent(type="board_created", data=b"{}")],
                       tenant_id="ten_a", stream_type="board")
    await append(store, "s1", [ev(2)])
    everything = await store.read_all()
    assert [e.position for e in everything] == [1, 2, 3]
    assert [e.position for e in await store.read_all(after=1, limit=1)] == [2]
    assert [e.position for e in await store.read_all(types=["board_created"])] == [2]
    assert [e.position for e in await store.read_all(stream_type="session")] == [1, 3]


async def test_bad_input_is_named(engine: Engine) -> None:
    store = engine.store
    with pytest.raises(InvalidRequest) as info:
        await append(store, "s1", [])
    assert info.value.field == "events"
    same = uuid.uuid4()
    with pytest.raises(InvalidRequest) as info:
        await append(store, "s1", [ev(1, id=same), ev(2, id=same)])
    assert info.value.field == "events[].id"
    with pytest.raises(InvalidRequest) as info:
        await store.read_all(limit=0)
    assert info.value.field == "limit"


async def test_stream_type_cannot_change(engine: Engine) -> None:
    await append(engine.store, "s1", [ev(1)])
    with pytest.raises(Conflict) as info:
        await engine.store.append("s1", [ev(2)], tenant_id="ten_a", stream_type="board")
    assert not isinstance(info.value, StreamMoved)


async def test_a_version_remembered_by_one_store_goes_stale_safely(
    engine: Engine, own_store: EventStore
) -> None:
    """Two appenders on one database (as two processes would be): each remembers stream
    versions, and the other's appends make them stale. Seqs must stay right, and a stale
    expected_seq verdict must not be given from memory."""
    mine, other = engine.store, own_store
    await append(mine, "shared", [ev(1)])  # mine remembers seq 1
    await append(other, "shared", [ev(2)])  # other reads seq 1, writes 2
    assert [e.seq for e in await append(mine, "shared", [ev(3)])] == [3]
    assert [e.seq for e in await append(other, "shared", [ev(4)])] == [4]
    with pytest.raises(Conflict):
        await append(mine, "shared", [ev(5)], expected_seq=3)  # mine remembers 3; it is 4
    assert [e.seq for e in await append(mine, "shared", [ev(5)], expected_seq=4)] == [5]
    seqs = [e.seq for e in await mine.read_stream("shared", tenant_id="ten_a")]
    assert seqs == [1, 2, 3, 4, 5]


async def test_a_stale_remembered_version_never_refuses_a_right_expected_seq(
    engine: Engine, own_store: EventStore
) -> None:
    await append(engine.store, "shared", [ev(1)])  # engine.store remembers seq 1
    await append(own_store, "shared", [ev(2)])  # now seq 2, unknown to engine.store
    [event] = await append(engine.store, "shared", [ev(3)], expected_seq=2)
    assert event.seq == 3


async def test_a_failing_listener_never_writes_a_batch_twice(engine: Engine) -> None:
    def broken(batch: object) -> None:
        raise RuntimeError("listener bug")

    engine.store.on_commit(broken)
    results = await asyncio.gather(*(append(engine.store, f"l{i}", [ev(i)]) for i in range(3)))
    assert sorted(e.position for batch in results for e in batch) == [1, 2, 3]
    assert await engine.store.head() == 3


async def test_a_conflict_reports_the_exact_version_even_from_stale_memory(
    engine: Engine, own_store: EventStore
) -> None:
    await append(engine.store, "shared", [ev(1)])  # remembered at 1
    await append(own_store, "shared", [ev(2)])
    await append(own_store, "shared", [ev(3)])  # really at 3
    with pytest.raises(StreamMoved) as info:
        await append(engine.store, "shared", [ev(4)], expected_seq=0)
    assert info.value.details == {"expected_seq": 0, "actual_seq": 3}


END = NewEvent(type="stream_ended", data=b"{}")


async def test_nothing_follows_the_event_that_closes_a_stream(
    engine: Engine, own_store: EventStore
) -> None:
    """``closed_by``: once a stream's last event is of that type the append is refused and
    nothing is written, whether this store wrote the closing event (decided from memory),
    another one did while this one remembered the stream open (decided under the head lock
    after the collision), or this one never saw the stream."""
    mine = engine.store
    await append(mine, "own", [ev(1), END])
    await append(mine, "theirs", [ev(1)], closed_by="stream_ended")  # open: goes through
    await append(own_store, "theirs", [END])  # mine still remembers it open
    await append(own_store, "unseen", [ev(1), END])
    for stream, last_seq in (("own", 2), ("theirs", 2), ("unseen", 2)):
        with pytest.raises(StreamClosed) as info:
            await append(mine, stream, [ev(2)], closed_by="stream_ended")
        assert isinstance(info.value, Conflict)
        assert info.value.details == {"last_seq": last_seq}
    assert await mine.head() == 6
    # The guard is the caller's to ask for: without it the append goes through.
    assert [e.seq for e in await append(mine, "own", [ev(3)])] == [3]


async def test_a_closing_event_racing_appends_from_another_process_is_the_last(
    engine: Engine, own_store: EventStore
) -> None:
    """Appends with ``closed_by`` from one store race the closing event from another: each
    either lands before the closing event or is refused, never after it."""
    for round_ in range(10):
        stream = f"race{round_}"
        await append(engine.store, stream, [ev(0)])
        outcomes = await asyncio.gather(
            *(append(engine.store, stream, [ev(n)], closed_by="stream_ended")
              for n in range(1, 6)),
            append(own_store, stream, [END]),
            return_exceptions=True,
        )
        assert all(not isinstance(o, BaseException) or isinstance(o, StreamClosed)
                   for o in outcomes), outcomes
        stored = await engine.store.read_stream(stream, tenant_id="ten_a")
        assert stored[-1].type == "stream_ended"
        refused = sum(isinstance(o, StreamClosed) for o in outcomes)
        assert len(stored) == 1 + 5 - refused + 1


async def test_a_cancelled_stop_leaves_no_caller_waiting(engine: Engine) -> None:
    """The head row is held by another transaction, so the append cannot commit; stop() is
    cancelled. The caller must get an answer, not wait forever."""
    blocker = await asyncpg.connect(engine.database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE")
    pending = asyncio.create_task(append(engine.store, "s1", [ev(1)]))
    await asyncio.sleep(0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.store.stop(), 0.5)
    await transaction.rollback()
    await blocker.close()
    outcome = await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 5)
    assert isinstance(outcome[0], list | Unavailable), outcome


async def test_last_event_is_the_streams_last_and_foreign_streams_are_not_found(
    engine: Engine,
) -> None:
    store = engine.store
    await append(store, "s1", [ev(1), ev(2)])
    await append(store, "s2", [ev(3)])
    last = await store.last_event("s1", tenant_id="ten_a")
    assert (last.seq, bytes(last.data)) == (2, b'{"n": 2}')
    for stream, tenant in (("s1", "ten_b"), ("nope", "ten_a")):
        with pytest.raises(NotFound):
            await store.last_event(stream, tenant_id=tenant)


async def test_a_stream_read_by_type_skips_the_others(engine: Engine) -> None:
    store = engine.store
    other = NewEvent(type="other_thing", data=b"{}")
    await append(store, "s1", [ev(1), other, ev(2), other])
    got = await store.read_stream_types("s1", frozenset({"thing_happened"}), tenant_id="ten_a")
    assert [(e.seq, e.type) for e in got] == [(1, "thing_happened"), (3, "thing_happened")]
    assert await store.read_stream_types("s1", frozenset({"nothing"}), tenant_id="ten_a") == []
    for stream, tenant in (("s1", "ten_b"), ("nope", "ten_a")):
        with pytest.raises(NotFound):
            await store.read_stream_types(stream, frozenset({"thing_happened"}),
                                          tenant_id=tenant)
    with pytest.raises(ValueError):  # names go into the SQL: only the engine's own
        await store.read_stream_types("s1", frozenset({"x') OR ('1"}), tenant_id="ten_a")


async def test_the_whole_log_and_the_listeners_get_each_event_with_its_tenant(
    engine: Engine,
) -> None:
    heard: list[Committed] = []
    engine.store.on_commit(heard.extend)
    [mine] = await append(engine.store, "s1", [ev(1)])
    [theirs] = await engine.store.append("s2", [ev(2)], tenant_id="ten_b", stream_type="session")
    logged = await engine.store.read_log(after=0)
    assert logged == heard == [Committed("ten_a", mine), Committed("ten_b", theirs)]
    assert [(c.tenant_id, c.event.position) for c in logged] == [("ten_a", 1), ("ten_b", 2)]
    tenant_id, event = logged[1]  # still unpacks as a pair
    assert (tenant_id, event) == ("ten_b", theirs)


async def test_the_replay_reads_give_the_events_a_stream_writes(engine: Engine) -> None:
    """read_stream_live / read_tenant_live build each frame in one pass from its row: byte for
    byte what LiveEvent.from_event makes of the stored event, line breaks in stored JSON too."""
    store = engine.store
    await append(store, "s1", [ev(1), NewEvent(type="thing_happened", data=b'{\n "n": 2\n}')])
    await store.append("b1", [NewEvent(type="board_created", data=b"{}")],
                       tenant_id="ten_a", stream_type="board")
    stream = await store.read_stream("s1", tenant_id="ten_a", after=0)
    assert await store.read_stream_live("s1", tenant_id="ten_a", after=0) == [
        LiveEvent.from_event("ten_a", event) for event in stream]
    boards = await store.read_all(tenant_id="ten_a", stream_type="board")
    assert await store.read_tenant_live("ten_a", stream_type="board") == [
        LiveEvent.from_event("ten_a", event) for event in boards]
    with pytest.raises(NotFound):
        await store.read_stream_live("s1", tenant_id="ten_b")


async def test_events_without_ids_get_fresh_ones_beside_events_with_theirs(
    engine: Engine,
) -> None:
    """In one batch: a caller's ids are kept, the rest get distinct version 4 ids."""
    mine = [uuid.uuid4() for _ in range(5)]
    requests = [append(engine.store, f"m{i}", [ev(i, id=mine[i]), NewEvent(type="t", data=b"{}")])
                for i in range(5)]
    results = await asyncio.gather(*requests)
    assert [events[0].id for events in results] == mine
    fresh = [events[1].id for events in results]
    assert len(set(fresh) | set(mine)) == 10
    assert {event_id.version for event_id in fresh} == {4}
    stored = await engine.store.read_stream("m0", tenant_id="ten_a")
    assert [event.id for event in stored] == [mine[0], fresh[0]]
