"""``Sessions`` decides a message's policy itself, whoever calls it: a retry with the same
Idempotency-Key gets its first message and is not counted against the rate limit, a refused
one appends nothing; and a session stream is checked (404, archived 409) before it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.domain.agents import Agents
from engine.domain.sessions import Sessions
from engine.errors import Conflict, NotFound, RateLimited
from engine.events import ContentBlock
from engine.infra.ratelimit import Allowance, RateLimiter
from engine.log.store import EventStore
from tests.helpers import started

TENANT = "ten_sessions"
HI = [ContentBlock(text="hi")]


class CountingLimiter(RateLimiter):
    """Counts what it is asked to count, without Redis; refuses past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.per_minute, self.taken = limit, 0

    async def take(self, tenant_id: str) -> Allowance | None:
        self.taken += 1
        if self.taken > self.per_minute:
            raise RateLimited("slow down", retry_after=30, headers={"X-RateLimit-Limit": "2"})
        return Allowance(self.per_minute, self.per_minute - self.taken, 30)


@pytest.fixture
async def store(pool: asyncpg.Pool) -> AsyncIterator[EventStore]:
    async with started(EventStore(pool)) as store:
        yield store


def sessions_with(store: EventStore, limiter: RateLimiter | None = None) -> Sessions:
    return Sessions(store, Agents(store), rate_limiter=limiter)


async def test_a_retried_message_gets_its_first_answer_and_is_not_counted(
    store: EventStore,
) -> None:
    limiter = CountingLimiter(limit=2)
    sessions = sessions_with(store, limiter)
    session, _ = await sessions.create(TENANT)
    first = await sessions.submit_message(TENANT, session.id, HI, idempotency_key="k")
    assert first.allowance == Allowance(2, 1, 30)
    for _ in range(3):
        again = await sessions.submit_message(TENANT, session.id, HI, idempotency_key="k")
        assert again == (first.event, None)  # the first message, nothing counted
    assert limiter.taken == 1
    other = await sessions.submit_message(TENANT, session.id, HI, idempotency_key="k2")
    assert other.event.id != first.event.id and other.allowance == Allowance(2, 0, 30)


async def test_a_message_past_the_limit_appends_nothing(store: EventStore) -> None:
    sessions = sessions_with(store, CountingLimiter(limit=0))
    session, _ = await sessions.create(TENANT)
    with pytest.raises(RateLimited) as refused:
        await sessions.submit_message(TENANT, session.id, HI)
    assert (refused.value.retry_after, refused.value.headers) == (30, {"X-RateLimit-Limit": "2"})
    assert [e.type for e in await store.read_whole_stream(session.id, tenant_id=TENANT)] == [
        "session_created"]


async def test_without_a_limiter_nothing_is_counted(store: EventStore) -> None:
    sessions = sessions_with(store)
    session, _ = await sessions.create(TENANT)
    submitted = await sessions.submit_message(TENANT, session.id, HI)
    assert submitted.allowance is None and submitted.event.type == "user_message"


async def test_a_stream_starts_only_on_a_session_with_something_to_follow(
    store: EventStore,
) -> None:
    sessions = sessions_with(store)
    with pytest.raises(NotFound):
        await sessions.stream_start(TENANT, "not-a-session", 0)
    with pytest.raises(NotFound):
        await sessions.stream_start(TENANT, "ses_01HZZZZZZZZZZZZZZZZZZZZZZZ", 0)
    session, _ = await sessions.create(TENANT)
    await sessions.stream_start(TENANT, session.id, 0)
    _, archived = await sessions.archive(TENANT, session.id)
    assert archived is not None
    await sessions.stream_start(TENANT, session.id, archived.seq - 1)  # session_archived follows
    with pytest.raises(Conflict) as ended:
        await sessions.stream_start(TENANT, session.id, archived.seq)
    assert ended.value.details == {"field": "after", "last_seq": archived.seq}
    with pytest.raises(NotFound):  # another tenant's session is no session
        await sessions.stream_start("ten_other", session.id, 0)
