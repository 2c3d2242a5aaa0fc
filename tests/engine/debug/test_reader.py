"""engine/debug/reader.py: the operator's reader finds a session without a tenant, reads a
range of it, and follows it until it is archived."""

from __future__ import annotations

import asyncio

import pytest

from engine.debug.reader import SessionReader
from engine.errors import NotFound
from engine.events import SessionArchived, new_event
from engine.log.store import EventStore
from tests.engine.debug.recorded import LOG, SID, TENANT, write


async def test_the_reader_finds_a_session_by_id_alone_and_follows_it(
    own_store: EventStore, database_url: str,
) -> None:
    from engine.infra.db import create_pool

    await write(own_store, LOG[:2])
    pool = await create_pool(database_url, size=2)
    try:
        reader = await SessionReader.open(pool, SID)
        assert reader.tenant_id == TENANT
        assert [e.seq for e in await reader.events(after=1, until=2)] == [2]
        with pytest.raises(NotFound):
            await SessionReader.open(pool, "ses_nothing")
        await own_store.append("agt_x", [new_event(SessionArchived())], tenant_id=TENANT,
                               stream_type="agent")
        with pytest.raises(NotFound):  # a stream that is not a session
            await SessionReader.open(pool, "agt_x")

        stop = asyncio.Event()
        seen: list[str] = []

        async def follow() -> None:
            async for batch in reader.follow(after=2, stop=stop, interval=0.05):
                seen.extend(event.type for event in batch)

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        assert seen == [] and not following.done()
        await write(own_store, [LOG[2], [SessionArchived()]])
        async with asyncio.timeout(30):
            await following  # ends by itself after session_archived
        assert seen == ["turn_started", "message_start", "session_archived"]

        stop.set()  # a set stop ends a follow at once
        assert [b async for b in reader.follow(after=0, stop=stop)] == []
    finally:
        await pool.close()
