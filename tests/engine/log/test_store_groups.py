"""``EventStore.append_group``: several streams in one transaction, all or nothing, with the
events' own created_at, idempotent by event id."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from engine.engine import Engine
from engine.errors import StreamMoved
from engine.events import NewEvent
from engine.log.store import GroupPart

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def part(stream: str, count: int, *, start: int = 0, expected_seq: int | None = None,
         ids: list[uuid.UUID] | None = None) -> GroupPart:
    ids = ids or [uuid.uuid4() for _ in range(count)]
    events = [NewEvent(type="thing_happened", data=b'{"n": %d}' % (start + n), id=ids[n])
              for n in range(count)]
    return GroupPart(stream, "session", events,
                     [WHEN + timedelta(seconds=start + n) for n in range(count)], expected_seq)


async def test_a_group_writes_every_part_with_its_created_at(engine: Engine) -> None:
    outcomes = await engine.store.append_group([part("a", 2), part("b", 1000 + 1)],
                                               tenant_id="ten_a")
    assert [o.written for o in outcomes] == [True, True]
    assert [e.position for o in outcomes for e in o.events] == list(range(1, 1004))
    stored = await engine.store.read_stream("a", tenant_id="ten_a")
    assert [(e.seq, e.created_at) for e in stored] == [(1, WHEN), (2, WHEN + timedelta(seconds=1))]
    assert await engine.store.head() == 1003


async def test_one_refused_part_writes_nothing_of_the_group(engine: Engine) -> None:
    await engine.store.append("b", [NewEvent(type="x", data=b"{}")], tenant_id="ten_a",
                              stream_type="session")
    with pytest.raises(StreamMoved):
        await engine.store.append_group([part("a", 3), part("b", 1, expected_seq=0)],
                                        tenant_id="ten_a")
    assert await engine.store.head() == 1
    assert await engine.store.stream_ids("ten_a", "session") == ["b"]


async def test_a_group_again_is_a_retry_that_writes_nothing(engine: Engine) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    first = await engine.store.append_group([part("a", 3, ids=ids)], tenant_id="ten_a")
    again = await engine.store.append_group([part("a", 3, ids=ids)], tenant_id="ten_a")
    assert [o.written for o in again] == [False]
    assert again[0].events == first[0].events
    assert await engine.store.head() == 3


async def test_listeners_hear_of_a_group_in_position_order(engine: Engine) -> None:
    heard: list[int] = []
    engine.store.on_commit(lambda batch: heard.extend(c.event.position for c in batch))
    await engine.store.append("c", [NewEvent(type="x", data=b"{}")], tenant_id="ten_a",
                              stream_type="session")
    await engine.store.append_group([part("a", 2)], tenant_id="ten_a")
    assert heard == [1, 2, 3]
