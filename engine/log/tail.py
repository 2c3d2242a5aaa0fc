"""Replay then live, with no gap and no duplicate at the hand-over.

A tail subscribes to the dispatcher *before* it replays from Postgres, so an event committed
during the replay is either in the replay or in the subscription buffer (or both: the live copy
is then dropped by its id). Session tails also check ``seq`` continuity and fill any hole from
Postgres, so they do not depend on the dispatcher being perfect.

Tails yield batches of ``LiveEvent``s (a replayed page, or everything a subscription buffered
since the last batch), so a busy stream is written many events per socket write; an empty batch
means a keepalive is due (the dispatcher's ticker). A replay reads one page ahead: Postgres
reads the next page while this process sends the last one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from engine.events import SESSION_ARCHIVED
from engine.log.dispatch import Dispatcher
from engine.log.live import LiveEvent
from engine.log.store import EventStore

_PAGE = 1000
_ENDS_A_STREAM = SESSION_ARCHIVED


async def session_tail(
    store: EventStore, dispatcher: Dispatcher, *, tenant_id: str, stream_id: str,
    after: int,
) -> AsyncIterator[list[LiveEvent]]:
    """Every event of one stream with ``seq > after``, in order, exactly once. It ends after
    ``session_archived`` (nothing can follow it)."""
    subscription = dispatcher.subscribe_stream(stream_id)
    metrics = dispatcher.metrics
    try:
        last = after
        replayed = 0
        async for page in _replay_stream(store, tenant_id, stream_id, after, until=None):
            yield page
            last, replayed = page[-1].seq, replayed + len(page)
            if page[-1].type == _ENDS_A_STREAM:
                return
        metrics.sse_replayed.observe(replayed)
        while True:
            batch = await subscription.next_batch()
            if not batch:
                yield batch
                continue
            out: list[LiveEvent] = []
            for live in batch:
                if live.seq <= last:
                    metrics.duplicates_suppressed.inc()
                    continue
                if live.seq > last + 1:
                    metrics.gaps_filled.inc()
                    async for page in _replay_stream(store, tenant_id, stream_id, last,
                                                     until=live.seq - 1):
                        out.extend(page)
                        last = page[-1].seq
                out.append(live)
                last = live.seq
            if out:
                yield out
                if out[-1].type == _ENDS_A_STREAM:
                    return
    finally:
        subscription.close()


async def tenant_tail(
    store: EventStore, dispatcher: Dispatcher, *, tenant_id: str, after: int,
    types: Collection[str] = (), stream_type: str | None = None,
) -> AsyncIterator[list[LiveEvent]]:
    """Every event of one tenant with ``position > after`` passing the filters, in order, once."""
    accepts = _filter(types, stream_type)
    subscription = dispatcher.subscribe_tenant(tenant_id, accepts)
    metrics = dispatcher.metrics
    try:
        last, replayed = after, 0

        def read(after: int) -> Awaitable[list[LiveEvent]]:
            return store.read_tenant_live(tenant_id, after=after, limit=_PAGE,
                                          types=list(types) or None, stream_type=stream_type)

        async for page in _read_ahead(read, after, lambda event: event.position):
            yield page
            last, replayed = page[-1].position, replayed + len(page)
        metrics.sse_replayed.observe(replayed)
        while True:
            batch = await subscription.next_batch()
            fresh = [live for live in batch if live.position > last]
            if len(fresh) < len(batch):
                metrics.duplicates_suppressed.inc(len(batch) - len(fresh))
            if fresh or not batch:
                yield fresh
                last = fresh[-1].position if fresh else last
    finally:
        subscription.close()


async def _replay_stream(
    store: EventStore, tenant_id: str, stream_id: str, after: int, *, until: int | None,
) -> AsyncIterator[list[LiveEvent]]:
    """Pages of the stream's events with ``after < seq <= until`` (no end if ``until`` is None)."""

    def read(after: int) -> Awaitable[list[LiveEvent]]:
        return store.read_stream_live(stream_id, tenant_id=tenant_id, after=after, limit=_PAGE)

    async for page in _read_ahead(read, after, lambda event: event.seq, until=until):
        events = page if until is None else [event for event in page if event.seq <= until]
        if events:
            yield events


async def _read_ahead(
    read: Callable[[int], Awaitable[list[LiveEvent]]], after: int,
    key: Callable[[LiveEvent], int], *, until: int | None = None,
) -> AsyncIterator[list[LiveEvent]]:
    """The pages ``read(after)`` gives, each next one already being read while the caller
    sends the last, up to the first short page (or past ``until``); empty pages are not
    yielded. A read that fails raises here; one left unread when the caller stops is
    cancelled."""
    if until is not None and after >= until:
        return
    pending: asyncio.Future[list[LiveEvent]] | None = asyncio.ensure_future(read(after))
    try:
        while pending is not None:
            page = await pending
            pending = None
            if len(page) == _PAGE and (until is None or key(page[-1]) < until):
                pending = asyncio.ensure_future(read(key(page[-1])))
            if page:
                yield page
    finally:
        if pending is not None:
            pending.cancel()
            pending.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[list[LiveEvent]]) -> None:
    """Mark a cancelled read's outcome as seen (an error after the caller left is nobody's)."""
    if not future.cancelled():
        future.exception()


def _filter(types: Collection[str], stream_type: str | None) -> Callable[[LiveEvent], bool] | None:
    if not types and stream_type is None:
        return None
    wanted = frozenset(types)

    def accepts(event: LiveEvent) -> bool:
        return (not wanted or event.type in wanted) and (
            stream_type is None or event.stream_type == stream_type
        )

    return accepts
