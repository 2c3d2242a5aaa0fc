"""The tenant's log as people read it: ``GET /v1/events`` (a page of the log by position) and
``GET /v1/audit`` (who did what: the actor, request and action ``meta`` records on each event).

The audit leaves out a model's streamed output (``message_start``/``_delta``/``_stop``): those
are a reply, not an action; the turn that caused them (``user_message``) and what its worker did
(``turn_started``, ``tool_use``, ``tool_result``, ``session_done``) are in it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from engine.errors import InvalidRequest
from engine.events import STREAM_TYPES, Event, decode_meta
from engine.log.store import EventStore
from engine.pages import Page, check_limit, page_of

_OUTPUT = ("message_start", "message_delta", "message_stop")


class AuditEntry(msgspec.Struct):
    position: int
    at: datetime
    actor: str | None
    request_id: str | None
    action: str  # the event type
    stream_type: str
    stream_id: str
    seq: int


class Audit:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def events(
        self, tenant_id: str, *, after: int, limit: int, types: list[str],
        stream_type: str | None,
    ) -> Page[Event]:
        _check(after, stream_type)
        found = await self._store.read_all(after=after, limit=check_limit(limit) + 1,
                                           tenant_id=tenant_id, types=types or None,
                                           stream_type=stream_type)
        return page_of(found, limit, lambda e: str(e.position))

    async def entries(
        self, tenant_id: str, *, after: int, limit: int, actor: str | None,
    ) -> Page[AuditEntry]:
        _check(after, None)
        found = await self._store.read_all(after=after, limit=check_limit(limit) + 1,
                                           tenant_id=tenant_id, actor=actor,
                                           exclude_types=_OUTPUT)
        return page_of([_entry(e) for e in found], limit, lambda e: str(e.position))


def _check(after: int, stream_type: str | None) -> None:
    if after < 0:
        raise InvalidRequest("after must be >= 0", field="after")
    if stream_type is not None and stream_type not in STREAM_TYPES:
        raise InvalidRequest(f"stream_type must be one of {', '.join(STREAM_TYPES)}",
                             field="stream_type")


def _entry(event: Event) -> AuditEntry:
    meta = decode_meta(event)
    return AuditEntry(event.position, event.created_at, meta.actor, meta.request_id, event.type,
                      event.stream_type, event.stream_id, event.seq)
