"""What the log tests (fan-out, dispatch, tail) share: a session to write to, appends of user
messages, waiting for a dispatcher or a subscription, and the routing of events compared."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from engine.engine import Engine
from engine.events import ContentBlock, Event, UserMessage, new_event
from engine.log.dispatch import Dispatcher, Subscription
from engine.log.live import LiveEvent
from engine.log.store import EventStore
from engine.metrics import Metrics


async def new_session(engine: Engine) -> tuple[str, str]:
    """A new tenant and a session of it (no agent: it only records messages)."""
    tenant = await engine.tenants.create("t")
    session, _ = await engine.sessions.create(tenant.id)
    return tenant.id, session.id


async def append(store: EventStore, tenant_id: str, session_id: str, count: int) -> list[Event]:
    """``count`` user messages appended to the session in one commit."""
    messages = [
        new_event(UserMessage(turn_id=f"turn_{uuid.uuid4().hex}", content=[ContentBlock(f"m{i}")]))
        for i in range(count)
    ]
    return await store.append(session_id, messages, tenant_id=tenant_id, stream_type="session")


async def settled(engine: Engine, dispatcher: Dispatcher | None = None) -> None:
    """Wait until the dispatcher has dispatched everything committed so far."""
    dispatcher = dispatcher or engine.fanout
    head = await engine.store.head()
    async with asyncio.timeout(30):
        while dispatcher._last < head:  # noqa: ASYNC110 - polling the dispatcher's cursor
            await asyncio.sleep(0.01)


async def take(subscription: Subscription, count: int, within: float = 30.0) -> list[LiveEvent]:
    """At least ``count`` events from the subscription (keepalives skipped)."""
    got: list[LiveEvent] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got.extend(await subscription.next_batch())
    return got


async def nothing_more(subscription: Subscription, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(subscription.next_batch(), wait)


def routed(events: Sequence[Event | LiveEvent]) -> list[tuple[int, int, str]]:
    """Where each event goes: (position, seq, stream_id)."""
    return [(e.position, e.seq, e.stream_id) for e in events]


def sample_of(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)
