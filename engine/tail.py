"""Replay then live, with no gap and no duplicate at the hand-over.

A tail subscribes to the dispatcher *before* it replays from Postgres, so an event committed
during the replay is either in the replay or in the subscription buffer (or both: the live copy
is then dropped by its id). Session tails also check ``seq`` continuity and fill any hole from
Postgres, so they do not depend on the dispatcher being perfect.

Tails yield ``LiveEvent``s, and ``None`` after ``idle`` seconds without one (for keepalives).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection

from engine.dispatch import Dispatcher, LiveEvent
from engine.store import EventStore

_PAGE = 1000


async def session_tail(
    store: EventStore, dispatcher: Dispatcher, *, tenant_id: str, stream_id: str,
    after: int, idle: float = 15.0,
) -> AsyncIterator[LiveEvent | None]:
    """Every event of one stream with ``seq > after``, in order, exactly once."""
    subscription = dispatcher.subscribe_stream(stream_id)
    metrics = dispatcher.metrics
    try:
        last = after
        replayed = 0
        async for event in _replay_stream(store, tenant_id, stream_id, after, until=None):
            yield event
            last, replayed = event.seq, replayed + 1
        metrics.sse_replayed.observe(replayed)
        while True:
            live = await subscription.next(idle)
            if live is None:
                yield None
                continue
            if live.seq <= last:
                metrics.duplicates_suppressed.inc()
                continue
            if live.seq > last + 1:
                metrics.gaps_filled.inc()
                async for missing in _replay_stream(store, tenant_id, stream_id, last,
                                                    until=live.seq - 1):
                    yield missing
                    last = missing.seq
            yield live
            last = live.seq
    finally:
        subscription.close()


async def tenant_tail(
    store: EventStore, dispatcher: Dispatcher, *, tenant_id: str, after: int,
    types: Collection[str] = (), stream_type: str | None = None, idle: float = 15.0,
) -> AsyncIterator[LiveEvent | None]:
    """Every event of one tenant with ``position > after`` passing the filters, in order, once."""
    accepts = _filter(types, stream_type)
    subscription = dispatcher.subscribe_tenant(tenant_id, accepts)
    metrics = dispatcher.metrics
    try:
        last, replayed = after, 0
        while True:
            page = await store.read_all(after=last, limit=_PAGE, tenant_id=tenant_id,
                                        types=list(types) or None, stream_type=stream_type)
            for event in page:
                yield LiveEvent.from_event(tenant_id, event)
            if page:
                last, replayed = page[-1].position, replayed + len(page)
            if len(page) < _PAGE:
                break
        metrics.sse_replayed.observe(replayed)
        while True:
            live = await subscription.next(idle)
            if live is None:
                yield None
            elif live.position <= last:
                metrics.duplicates_suppressed.inc()
            else:
                yield live
                last = live.position
    finally:
        subscription.close()


async def _replay_stream(
    store: EventStore, tenant_id: str, stream_id: str, after: int, *, until: int | None,
) -> AsyncIterator[LiveEvent]:
    while until is None or after < until:
        page = await store.read_stream(stream_id, tenant_id=tenant_id, after=after, limit=_PAGE)
        for event in page:
            if until is not None and event.seq > until:
                return
            yield LiveEvent.from_event(tenant_id, event)
            after = event.seq
        if len(page) < _PAGE:
            return


def _filter(types: Collection[str], stream_type: str | None) -> Callable[[LiveEvent], bool] | None:
    if not types and stream_type is None:
        return None
    wanted = frozenset(types)

    def accepts(event: LiveEvent) -> bool:
        return (not wanted or event.type in wanted) and (
            stream_type is None or event.stream_type == stream_type
        )

    return accepts
