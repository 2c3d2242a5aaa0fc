"""The event store: ``append`` and the reads (``read_stream``, ``read_all``, ``read_log``...).

Positions. Every append transaction takes its positions by updating the single ``log_head``
row (``position = position + n``). The row lock that update takes is held until commit, so
transactions hand out positions strictly in commit order: the log is gapless (a rolled-back
transaction never used its numbers) and a reader can never see position N+1 before N.

Appends go through one appender per process, which group-commits them (engine/log/appender.py);
reads go straight to Postgres. This module is the log's API: ``Committed`` (engine/log/rows.py)
and ``MAX_EVENTS_PER_APPEND`` are imported from here.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from engine.errors import InvalidRequest, NotFound
from engine.events import Event, NewEvent
from engine.infra.db import connection
from engine.log.appender import MAX_EVENTS_PER_APPEND as MAX_EVENTS_PER_APPEND
from engine.log.appender import Appender
from engine.log.appender import GroupOutcome as GroupOutcome
from engine.log.appender import GroupPart as GroupPart
from engine.log.live import LiveEvent, live_events
from engine.log.rows import E_EVENT_COLUMNS, EVENT_COLUMNS, HEADER_COLUMNS, LAST_SEQ, event_of
from engine.log.rows import Committed as Committed
from engine.metrics import Metrics

MAX_READ_LIMIT = 1000

_TYPE_NAME = re.compile(r"^[a-z][a-z_]*$")


class EventStore:
    def __init__(
        self, pool: asyncpg.Pool, *, batch_max: int = 1000, metrics: Metrics | None = None
    ) -> None:
        self._pool = pool
        self._appender = Appender(pool, batch_max=batch_max, metrics=metrics or Metrics())

    def on_commit(self, listener: Callable[[list[Committed]], None]) -> None:
        """Call ``listener`` (synchronously, so it must not block) with every committed batch."""
        self._appender.on_commit(listener)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the appender (a store that only reads never needs to)."""
        self._appender.start()

    async def stop(self) -> None:
        """Commit what is queued (new appends are refused), then stop the appender. Shielded:
        cancelling stop() does not cancel the appender in the middle of a batch."""
        await self._appender.stop()

    # --- writes -------------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        tenant_id: str,
        stream_type: str,
        expected_seq: int | None = None,
        closed_by: str | None = None,
    ) -> list[Event]:
        """Append ``events`` to ``stream_id`` atomically; returns them as stored.

        Idempotent by event id: a request whose ids are all stored already returns the stored
        events and writes nothing. ``expected_seq`` (0 = the stream must not exist) raises
        StreamMoved (a Conflict) on mismatch, with nothing written. ``closed_by`` names a
        terminal event type: when the stream's last event is one, StreamClosed (a Conflict),
        nothing written; checked where the seq is, so no read before the append is needed.
        """
        return await self._appender.append(stream_id, events, tenant_id=tenant_id,
                                           stream_type=stream_type, expected_seq=expected_seq,
                                           closed_by=closed_by)

    async def append_group(self, parts: Sequence[GroupPart], *,
                           tenant_id: str) -> list[GroupOutcome]:
        """Append to several streams in one transaction, each event with its own
        ``created_at`` (an import): all of it, or nothing and the first refusal raised. Each
        part is idempotent by event id like ``append``; ``written`` says which parts wrote."""
        return await self._appender.append_group(tenant_id, parts)

    # --- reads --------------------------------------------------------------------------------

    async def read_stream(
        self, stream_id: str, *, tenant_id: str, after: int = 0, limit: int = 100
    ) -> list[Event]:
        """Events of one stream with ``seq > after``, in seq order. Unknown or foreign: NotFound."""
        return [event_of(row) for row in await self._stream_rows(stream_id, tenant_id, after,
                                                                  limit)]

    async def read_stream_live(
        self, stream_id: str, *, tenant_id: str, after: int = 0, limit: int = 100
    ) -> list[LiveEvent]:
        """``read_stream`` as the events a stream writes (a replay: no ``Event`` per row)."""
        return live_events(tenant_id, await self._stream_rows(stream_id, tenant_id, after, limit))

    async def _stream_rows(self, stream_id: str, tenant_id: str, after: int,
                           limit: int) -> list[asyncpg.Record]:
        limit = _check_limit(limit)
        async with connection(self._pool, "reading a stream") as conn:
            rows: list[asyncpg.Record] = await conn.fetch(
                # The owner is checked on the streams row, not on events.tenant_id: a condition
                # on that column lets the planner AND in the tenant index and sort the whole
                # stream for every page (seen right after a bulk load, before ANALYZE).
                f"SELECT {EVENT_COLUMNS} FROM events e"
                " WHERE stream_id = $1 AND seq > $3"
                " AND EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = $1 AND s.tenant_id = $2)"
                " ORDER BY seq LIMIT $4",
                stream_id, tenant_id, after, limit,
            )
            if not rows and not await _stream_exists(conn, stream_id, tenant_id):
                raise NotFound(f"stream {stream_id!r} not found")
        return rows

    async def read_stream_types(self, stream_id: str, types: frozenset[str], *,
                                tenant_id: str) -> list[Event]:
        """Every event of one stream whose type is in ``types``, in seq order. Unknown or
        foreign: NotFound. The types are written into the SQL as constants (they are the
        engine's own names, never input), so a partial index on exactly those types serves it
        without reading the stream's other events (``events_agent_config``, ``events_memory``
        in schema.sql)."""
        if not types or not all(_TYPE_NAME.match(t) for t in types):
            raise ValueError(f"not event type names: {sorted(types)}")
        listed = ", ".join(f"'{t}'" for t in sorted(types))
        async with connection(self._pool, "reading a stream") as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE stream_id = $1"
                f" AND type IN ({listed})"
                " AND EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = $1 AND s.tenant_id = $2)"
                " ORDER BY seq", stream_id, tenant_id)
            if not rows and not await _stream_exists(conn, stream_id, tenant_id):
                raise NotFound(f"stream {stream_id!r} not found")
        return [event_of(row) for row in rows]

    async def read_streams_types(self, stream_ids: Sequence[str], types: frozenset[str], *,
                                 tenant_id: str, data: bool = True) -> list[Event]:
        """``read_stream_types`` of several streams at once, in (stream, seq) order; an unknown
        or foreign stream has none. ``data=False``: the events' headers only (``data`` and
        ``meta`` are ``{}``), which never reads their stored JSON (``read_events_at`` does)."""
        if not types or not all(_TYPE_NAME.match(t) for t in types):
            raise ValueError(f"not event type names: {sorted(types)}")
        listed = ", ".join(f"'{t}'" for t in sorted(types))
        columns = EVENT_COLUMNS if data else HEADER_COLUMNS
        async with connection(self._pool, "reading streams") as conn:
            rows = await conn.fetch(
                f"SELECT {columns} FROM events e WHERE stream_id = ANY($1::text[])"
                f" AND type IN ({listed}) AND EXISTS (SELECT 1 FROM streams s"
                " WHERE s.stream_id = e.stream_id AND s.tenant_id = $2)"
                " ORDER BY stream_id, seq", list(stream_ids), tenant_id)
        return [event_of(row) for row in rows]

    async def read_events_at(self, keys: Sequence[tuple[str, int]], *,
                             tenant_id: str) -> list[Event]:
        """The events at these (stream id, seq), in (stream, seq) order; one the tenant does
        not have is left out."""
        async with connection(self._pool, "reading events") as conn:
            rows = await conn.fetch(
                f"SELECT {E_EVENT_COLUMNS} FROM events e"
                " JOIN unnest($1::text[], $2::bigint[]) AS k (stream_id, seq)"
                " ON e.stream_id = k.stream_id AND e.seq = k.seq"
                " WHERE EXISTS (SELECT 1 FROM streams s"
                " WHERE s.stream_id = e.stream_id AND s.tenant_id = $3)"
                " ORDER BY e.stream_id, e.seq",
                [key[0] for key in keys], [key[1] for key in keys], tenant_id)
        return [event_of(row) for row in rows]

    async def read_whole_stream(self, stream_id: str, *, tenant_id: str) -> list[Event]:
        """Every event of one stream, in seq order (page by page). Unknown or foreign: NotFound."""
        events: list[Event] = []
        while True:
            page = await self.read_stream(stream_id, tenant_id=tenant_id, after=len(events),
                                          limit=1000)
            events.extend(page)
            if len(page) < 1000:
                return events

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        tenant_id: str | None = None,
        types: Sequence[str] | None = None,
        stream_type: str | None = None,
        actor: str | None = None,
        exclude_types: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events with ``position > after`` in position order, optionally filtered (``actor``:
        who ``meta`` names)."""
        rows = await self._log_rows(after, limit, tenant_id=tenant_id, types=types,
                                    stream_type=stream_type, actor=actor,
                                    exclude_types=exclude_types)
        return [event_of(row) for row in rows]

    async def read_tenant_live(
        self, tenant_id: str, *, after: int = 0, limit: int = 100,
        types: Sequence[str] | None = None, stream_type: str | None = None,
    ) -> list[LiveEvent]:
        """``read_all`` of one tenant as the events a stream writes (a replay)."""
        rows = await self._log_rows(after, limit, tenant_id=tenant_id, types=types,
                                    stream_type=stream_type)
        return live_events(tenant_id, rows)

    async def _log_rows(
        self, after: int, limit: int, *, tenant_id: str | None = None,
        types: Sequence[str] | None = None, stream_type: str | None = None,
        actor: str | None = None, exclude_types: Sequence[str] | None = None,
    ) -> list[asyncpg.Record]:
        limit = _check_limit(limit)
        clauses: list[str] = ["position > $1"]
        args: list[Any] = [after]
        for column, value in (("tenant_id", tenant_id), ("stream_type", stream_type),
                              ("meta->>'actor'", actor)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if types:
            args.append(list(types))
            clauses.append(f"type = ANY(${len(args)}::text[])")
        if exclude_types:
            args.append(list(exclude_types))
            clauses.append(f"type <> ALL(${len(args)}::text[])")
        args.append(limit)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)}"
            f" ORDER BY position LIMIT ${len(args)}"
        )
        async with connection(self._pool, "reading the log") as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows

    async def stream_version(self, stream_id: str, *, tenant_id: str) -> int:
        """The seq of the stream's last event; NotFound for an unknown or foreign stream."""
        async with connection(self._pool, "reading a stream version") as conn:
            seq = await conn.fetchval(
                f"SELECT {LAST_SEQ} FROM streams s WHERE stream_id = $1 AND tenant_id = $2",
                stream_id, tenant_id,
            )
        if seq is None:
            raise NotFound(f"stream {stream_id!r} not found")
        return int(seq)

    async def event_by_id(self, event_id: uuid.UUID, *, tenant_id: str) -> Event | None:
        """The stored event with this id, if this tenant's (a retried request's first result)."""
        async with connection(self._pool, "reading an event") as conn:
            row = await conn.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND tenant_id = $2",
                event_id, tenant_id,
            )
        return None if row is None else event_of(row)

    async def stream_ids(
        self, tenant_id: str, stream_type: str, *, after: str = "", limit: int = 100
    ) -> list[str]:
        """A tenant's stream ids of one type, in id order, after ``after``."""
        limit = _check_limit(limit)
        async with connection(self._pool, "listing streams") as conn:
            rows = await conn.fetch(
                "SELECT stream_id FROM streams WHERE tenant_id = $1 AND stream_type = $2"
                " AND stream_id > $3 ORDER BY stream_id LIMIT $4",
                tenant_id, stream_type, after, limit,
            )
        return [row[0] for row in rows]

    async def last_event(self, stream_id: str, *, tenant_id: str) -> Event:
        """The stream's last event, in one indexed read; NotFound for an unknown or foreign
        stream (every stream row has its first event: both are written by one transaction)."""
        async with connection(self._pool, "reading a stream's last event") as conn:
            row = await conn.fetchrow(
                f"SELECT {E_EVENT_COLUMNS} FROM streams s CROSS JOIN LATERAL"
                " (SELECT * FROM events e WHERE e.stream_id = s.stream_id"
                "  ORDER BY e.seq DESC LIMIT 1) e"
                " WHERE s.stream_id = $1 AND s.tenant_id = $2",
                stream_id, tenant_id,
            )
        if row is None:
            raise NotFound(f"stream {stream_id!r} not found")
        return event_of(row)

    async def read_log(self, *, after: int, limit: int = 1000) -> list[Committed]:
        """The whole log (every tenant) after ``after``, with each event's tenant: for the
        engine's own consumers (fan-out, relay, projections), never for clients."""
        limit = _check_limit(limit)
        async with connection(self._pool, "reading the log") as conn:
            return await read_log_page(conn, after=after, limit=limit)

    async def head(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        async with connection(self._pool, "reading the log head") as conn:
            return int(await conn.fetchval("SELECT position FROM log_head WHERE id = 1"))



async def _stream_exists(conn: Any, stream_id: str, tenant_id: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM streams WHERE stream_id = $1 AND tenant_id = $2", stream_id, tenant_id
    )
    return found is not None


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_READ_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_READ_LIMIT}", field="limit")
    return limit


async def read_log_page(conn: Any, *, after: int, limit: int) -> list[Committed]:
    """``EventStore.read_log`` on a connection the caller holds (a projection reads and writes
    in one transaction)."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS}, tenant_id FROM events WHERE position > $1"
        " ORDER BY position LIMIT $2", after, limit,
    )
    return [Committed(row[9], event_of(row)) for row in rows]
