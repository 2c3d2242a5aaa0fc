"""The group commit: one appender per process owns the write path of the event store.

Concurrent callers queue their requests and the appender's task commits everything queued in
one transaction, so the per-commit cost (lock, fsync) is shared. Each request still succeeds or
fails on its own: a wrong ``expected_seq`` rejects that request only (``StreamMoved``), with
nothing of it written, and a batch that the database refuses is retried request by request so
only the culprit fails. Positions come from the ``log_head`` row (engine/log/store.py).

Two ways to commit a batch. The appender remembers the version (last ``seq``) of every stream
it has written or read.

* Fast: when every stream of the batch is remembered, the batch is planned from memory and
  written by one statement in its own transaction (head update, events insert): one round
  trip. Memory can only be too low (another process appended since); then the insert collides
  on ``UNIQUE (stream_id, seq)`` (or ``UNIQUE (id)`` for a retried id), nothing is written, and
  the batch goes the careful way. An ``expected_seq`` that differs from a remembered version
  also goes the careful way: a conflict is only ever reported from an exact version.
* Careful: lock the head row first, then read the streams and the caller-supplied ids under
  the lock (so they are exact), plan, write, commit.

A stale memory therefore costs a retry, never a wrong ``seq`` or a wrong verdict.

One transaction is in flight at a time, but the Python work around it overlaps with it: the
next batch is sent the moment one commits, before that one's callers are answered, and a crowd
that finds nothing committing is split in two halves that then take turns. Postgres commits
one half while this process answers the other and its callers append again (before, the
database waited while Python settled a batch, and Python waited while it committed).

A group (``append_group``: an imported session with its agent's config) is several streams'
appends that commit all together or not at all, with the ``created_at`` they were exported
with. It goes through the same queue, so listeners still hear of batches in position order,
and commits alone, the careful way: any request of it that would fail fails the whole group.
"""
from __future__ import annotations

import asyncio
import decimal
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from engine.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    SpoolError,
    StreamClosed,
    StreamMoved,
    Unavailable,
)
from engine.events import STREAM_TYPES, Event, NewEvent
from engine.ids import new_uuids
from engine.infra.db import connection
from engine.log.rows import EVENT_COLUMNS, Committed, event_of
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("store")

MAX_EVENTS_PER_APPEND = 1000
# A group's requests are bounded by the import body size (SPOOL_IMPORT_MAX_BYTES), not this.
MAX_EVENTS_PER_GROUP = 10_000_000
_MAX_REMEMBERED_STREAMS = 100_000
# Requests waiting, with nothing committing, from which a batch takes only half (_take_batch).
_SPLIT_AT = 128


@dataclass(slots=True)
class _Request:
    tenant_id: str
    stream_id: str
    stream_type: str
    events: Sequence[NewEvent]
    expected_seq: int | None
    closed_by: str | None
    future: asyncio.Future[list[Event]]


Outcome = list[Event] | SpoolError


@dataclass(slots=True)
class _Commit:
    """A batch on its way to Postgres, and the task that commits it."""

    batch: list[_Request]
    task: asyncio.Task[list[Outcome]]


@dataclass(frozen=True, slots=True)
class GroupPart:
    """One stream's share of a group: its events, each with the ``created_at`` it keeps."""

    stream_id: str
    stream_type: str
    events: Sequence[NewEvent]
    created_at: Sequence[datetime]
    expected_seq: int | None = None


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """A part's events as stored, and whether this group wrote them (False: a retry, they
    were stored already)."""

    events: list[Event]
    written: bool


@dataclass(slots=True)
class _Group:
    tenant_id: str
    parts: Sequence[GroupPart]
    future: asyncio.Future[list[GroupOutcome]]


@dataclass(slots=True)
class _Stream:
    tenant_id: str
    stream_type: str
    seq: int
    last_type: str | None  # the type of the event at ``seq`` (None: no event yet)
    is_new: bool = False
    remembered: bool = False  # from memory, not read under the head lock


@dataclass(slots=True)
class _Stored:
    """An event id already taken: by a stored event, or by row ``row`` of this batch."""

    tenant_id: str
    event: Event | int


@dataclass(slots=True)
class _Plan:
    """What one transaction will write (row i gets position base + i + 1), and each request's
    outcome: stored events, rows of this batch, or an error."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: list[list[Event | int] | SpoolError] = field(default_factory=list)
    new_streams: dict[str, _Stream] = field(default_factory=dict)
    fresh_ids: Iterator[uuid.UUID] = field(default_factory=lambda: iter(()))

    @classmethod
    def of(cls, batch: Sequence[_Request]) -> _Plan:
        """An empty plan with an id at hand, made in bulk, for every event of the batch that
        comes without one (an import's events all have theirs: none is made for them)."""
        count = sum(1 for request in batch for event in request.events if event.id is None)
        return cls(fresh_ids=iter(new_uuids(count)))


class Appender:
    """Queues appends and commits them in batches of at most ``batch_max`` events, from one
    task (``start``, ``stop``)."""

    def __init__(self, pool: asyncpg.Pool, *, batch_max: int, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._batch_max = batch_max
        self._queue: deque[_Request | _Group] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._versions: dict[str, _Stream] = {}  # stream_id -> owner, type, last known seq
        self._listeners: list[Callable[[list[Committed]], None]] = []
        self._committed: list[list[Committed]] = []  # committed, listeners not yet told

    def on_commit(self, listener: Callable[[list[Committed]], None]) -> None:
        """Call ``listener`` (synchronously, so it must not block) with every committed batch."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool.appender")

    async def stop(self) -> None:
        """Commit what is queued (new appends are refused), then stop. Shielded: cancelling
        stop() does not cancel the appender in the middle of a batch."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        await asyncio.shield(self._task)
        self._task = None

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, tenant_id: str, stream_type: str,
        expected_seq: int | None, closed_by: str | None = None,
    ) -> list[Event]:
        """Queue one append and wait for its outcome (``EventStore.append``)."""
        _validate_append(stream_id, stream_type, events, expected_seq)
        if self._task is None or self._stopping:
            raise Unavailable("the event store is not running", retry_after=1)
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._queue.append(
            _Request(tenant_id, stream_id, stream_type, events, expected_seq, closed_by, future)
        )
        self._wakeup.set()
        return await future

    async def append_group(self, tenant_id: str,
                           parts: Sequence[GroupPart]) -> list[GroupOutcome]:
        """Queue a group and wait for it: every part commits, or none (the first part's error
        is raised). A part whose event ids are all stored already is a retry (written False)."""
        for part in parts:
            _validate_append(part.stream_id, part.stream_type, part.events, part.expected_seq,
                             max_events=MAX_EVENTS_PER_GROUP)
            if len(part.created_at) != len(part.events):
                raise ValueError("a group part needs one created_at per event")
        if self._task is None or self._stopping:
            raise Unavailable("the event store is not running", retry_after=1)
        future: asyncio.Future[list[GroupOutcome]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Group(tenant_id, parts, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        committing: _Commit | None = None
        group: list[_Group] = []
        try:
            while not (self._stopping and not self._queue and committing is None):
                if committing is None:
                    if not self._queue:
                        await self._wakeup.wait()
                        self._wakeup.clear()
                        continue
                    if isinstance(head := self._queue[0], _Group):
                        self._queue.popleft()
                        group = [head]
                        _settle(head.future, await self._commit_group_or_error(head))
                        group = []
                        self._notify()
                        continue
                    committing = self._launch(self._take_batch(split=True))
                outcomes = await committing.task
                done, committing = committing, None
                # The next batch goes to Postgres before this one's callers are answered, so
                # Postgres commits it while this process settles, notifies, and runs the
                # callers until they append again. One transaction is still in flight at a
                # time: positions and versions are as if the batches ran one after another.
                if self._queue and isinstance(self._queue[0], _Request):
                    committing = self._launch(self._take_batch(split=False))
                for request, outcome in zip(done.batch, outcomes, strict=True):
                    _settle(request.future, outcome)
                self._notify()
        finally:  # cancelled: nobody may wait forever (what committed stays committed)
            waiting: list[_Request | _Group] = [*group, *self._queue]
            if committing is not None:
                committing.task.cancel()
                waiting += committing.batch
            for item in waiting:
                _settle(item.future, Unavailable("the event store stopped", retry_after=1))
            self._queue.clear()

    def _launch(self, batch: list[_Request]) -> _Commit:
        return _Commit(batch, asyncio.create_task(self._commit_or_isolate(batch),
                                                  name="spool.appender.commit"))

    def _notify(self) -> None:
        """Tell the listeners what committed; a failing listener is logged, never retried
        as if the batch had not committed."""
        batches, self._committed = self._committed, []
        for committed in batches:
            for listener in self._listeners:
                try:
                    listener(committed)
                except Exception:
                    log.exception("store.listener_failed")

    def _take_batch(self, *, split: bool) -> list[_Request]:
        """Requests from the head of the queue, up to a group (which commits alone). With
        ``split`` (nothing is committing) and a crowd waiting, only half of them: the other
        half is sent the moment the first commits, and from then on two halves take turns
        (one commits while the other's callers are answered and append again)."""
        limit = len(self._queue)
        if split and limit >= _SPLIT_AT:
            limit = (limit + 1) // 2
        first = self._queue.popleft()
        assert isinstance(first, _Request)
        batch, count = [first], len(first.events)
        while self._queue and len(batch) < limit:
            request = self._queue[0]
            if isinstance(request, _Group) or count + len(request.events) > self._batch_max:
                break
            self._queue.popleft()
            count += len(request.events)
            batch.append(request)
        return batch

    async def _commit_or_isolate(self, batch: list[_Request]) -> list[Outcome]:
        """Commit the batch; if the database refuses it (not an outage), commit each request
        alone so one bad request cannot fail the others queued with it."""
        try:
            return await self._commit_fresh(batch)
        except Unavailable as exc:
            return [Unavailable(exc.message, retry_after=exc.retry_after) for _ in batch]
        except Exception as exc:  # never let one bad batch kill the write path
            if len(batch) > 1:
                return [outcome for request in batch
                        for outcome in await self._commit_or_isolate([request])]
            error = exc if isinstance(exc, SpoolError) else SpoolError("append failed")
            if error is not exc:
                error.__cause__ = exc
            return [error]

    async def _commit_fresh(self, batch: list[_Request]) -> list[Outcome]:
        """The fast way when memory covers the batch; the careful way otherwise, or when
        memory turns out stale."""
        if all(request.stream_id in self._versions for request in batch):
            try:
                return await self._commit(batch, careful=False)
            except _StaleVersions:
                self._metrics.append_stale_retries.inc()
                for request in batch:
                    self._versions.pop(request.stream_id, None)
        return await self._commit(batch, careful=True)

    async def _commit(self, batch: list[_Request], *, careful: bool) -> list[Outcome]:
        started = time.perf_counter()
        async with connection(self._pool, "appending events") as conn:
            if careful:
                async with conn.transaction():
                    await conn.execute("SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE")
                    streams = await _fetch_streams(conn, batch)
                    plan, base, at = await self._plan_and_write(conn, batch, streams,
                                                                careful=True)
            else:
                streams = self._remembered(batch)
                plan, base, at = await self._plan_and_write(conn, batch, streams, careful=False)
        self._remember(streams)
        outcomes, events = _outcomes(plan, base, at)
        if events:
            self._committed.append(
                [Committed(row[1], event) for row, event in zip(plan.rows, events, strict=True)]
            )
            self._metrics.append_seconds.observe(time.perf_counter() - started)
            self._metrics.append_batch_size.observe(len(events))
            self._metrics.events_appended.inc(len(events))
            self._metrics.log_head.set(events[-1].position)
        return outcomes

    async def _plan_and_write(
        self, conn: Any, batch: list[_Request], streams: dict[str, _Stream], *, careful: bool
    ) -> tuple[_Plan, int, datetime]:
        # The fast way skips the probe for caller-supplied ids: a retried id collides on
        # UNIQUE (id), which sends the batch the careful way, where the probe runs.
        existing = await _fetch_existing(conn, batch) if careful else {}
        plan = _Plan.of(batch)
        for request in batch:
            plan.outcomes.append(_plan_request(plan, request, existing, streams))
        if not plan.rows:
            return plan, 0, datetime.now(UTC)
        base, at = await _write(conn, plan)
        return plan, base, at

    async def _commit_group_or_error(self, group: _Group) -> list[GroupOutcome] | SpoolError:
        try:
            return await self._commit_group(group)
        except SpoolError as exc:
            return exc
        except Exception as exc:  # never let one bad group kill the write path
            error = SpoolError("append failed")
            error.__cause__ = exc
            return error

    async def _commit_group(self, group: _Group) -> list[GroupOutcome]:
        """The careful way, in one transaction: plan every part under the head lock, raise
        the first refusal (nothing written), write the rows with their own created_at."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()  # the requests' futures are never awaited
        requests = [_Request(group.tenant_id, part.stream_id, part.stream_type, part.events,
                             part.expected_seq, None, loop.create_future())
                    for part in group.parts]
        async with connection(self._pool, "appending events") as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE")
            streams = await _fetch_streams(conn, requests)
            existing = await _fetch_existing(conn, requests)
            plan, dated = _Plan.of(requests), list[datetime]()
            for request, part in zip(requests, group.parts, strict=True):
                before = len(plan.rows)
                outcome = _plan_request(plan, request, existing, streams)
                if isinstance(outcome, SpoolError):
                    raise outcome
                plan.outcomes.append(outcome)
                if len(plan.rows) > before:
                    dated.extend(part.created_at)
            base = await _write_dated(conn, plan, dated) if plan.rows else 0
        self._remember(streams)
        events = [
            Event(id=row[0], stream_id=row[2], stream_type=row[3], seq=row[4],
                  position=base + index + 1, type=row[5], data=msgspec.Raw(row[6]),
                  meta=msgspec.Raw(row[7]), created_at=at)
            for index, (row, at) in enumerate(zip(plan.rows, dated, strict=True))
        ]
        if events:
            self._committed.append(
                [Committed(row[1], event) for row, event in zip(plan.rows, events, strict=True)])
            self._metrics.append_seconds.observe(time.perf_counter() - started)
            self._metrics.events_appended.inc(len(events))
            self._metrics.log_head.set(events[-1].position)
        return [GroupOutcome([events[item] if isinstance(item, int) else item
                              for item in outcome],
                             written=any(isinstance(item, int) for item in outcome))
                for outcome in plan.outcomes if not isinstance(outcome, SpoolError)]

    def _remembered(self, batch: list[_Request]) -> dict[str, _Stream]:
        """Copies of the remembered versions (planning advances them)."""
        streams: dict[str, _Stream] = {}
        for request in batch:
            known = self._versions[request.stream_id]
            streams[request.stream_id] = _Stream(
                known.tenant_id, known.stream_type, known.seq, known.last_type, remembered=True
            )
        return streams

    def _remember(self, streams: dict[str, _Stream]) -> None:
        if len(self._versions) + len(streams) > _MAX_REMEMBERED_STREAMS:
            self._versions.clear()  # crude but bounded: the next batches read them again
        for stream in streams.values():
            stream.remembered = False
        self._versions.update(streams)


# --- planning one transaction (pure, under the head lock) ----------------------------------------


class _StaleVersions(SpoolError):
    """Another process appended to a stream whose version this one remembered."""


def _plan_request(
    plan: _Plan,
    request: _Request,
    existing: dict[uuid.UUID, _Stored],
    streams: dict[str, _Stream],
) -> list[Event | int] | SpoolError:
    known = [existing.get(event.id) for event in request.events if event.id is not None]
    if any(stored is not None for stored in known):
        return _retried(request, known)
    stream = streams.get(request.stream_id)
    if stream is not None and stream.tenant_id != request.tenant_id:
        return NotFound(f"stream {request.stream_id!r} not found")
    if stream is not None and stream.stream_type != request.stream_type:
        return Conflict(f"stream {request.stream_id!r} is a {stream.stream_type} stream")
    current = stream.seq if stream is not None else 0
    if request.expected_seq is not None and request.expected_seq != current:
        if stream is not None and stream.remembered:  # the verdict needs the exact version
            raise _StaleVersions("a remembered version may be stale")
        return StreamMoved(
            f"expected_seq {request.expected_seq} but stream {request.stream_id!r} is at {current}",
            details={"expected_seq": request.expected_seq, "actual_seq": current},
        )
    if stream is not None and request.closed_by is not None \
            and stream.last_type == request.closed_by:
        # Exact even from memory: a terminal event stays the last, and a stale memory of an
        # open stream collides on its next seq, which sends the batch the careful way.
        return StreamClosed(f"stream {request.stream_id!r} ended with {stream.last_type}",
                            details={"last_seq": stream.seq})
    if stream is None:
        stream = streams[request.stream_id] = _Stream(
            request.tenant_id, request.stream_type, 0, None, is_new=True
        )
    return _assign(plan, request, stream, existing)


def _retried(request: _Request, known: list[_Stored | None]) -> list[Event | int] | SpoolError:
    """A request whose event ids are stored already is a retry: return what was stored.

    The stored events are returned even if the retry names another stream (a retried create
    that generated a fresh stream id gets the original back). Ids that are only partly stored,
    or stored by another tenant, are a conflict."""
    if len(known) < len(request.events) or any(
        stored is None or stored.tenant_id != request.tenant_id for stored in known
    ):
        return Conflict("some of these event ids are already used by other events",
                        details={"field": "events[].id"})
    return [stored.event for stored in known if stored is not None]


def _assign(
    plan: _Plan, request: _Request, stream: _Stream, existing: dict[uuid.UUID, _Stored]
) -> list[Event | int]:
    rows: list[Event | int] = []
    for new in request.events:
        stream.seq += 1
        stream.last_type = new.type
        row = len(plan.rows)
        plan.rows.append((new.id or next(plan.fresh_ids), request.tenant_id, request.stream_id,
                          request.stream_type, stream.seq, new.type, new.data, new.meta))
        if new.id is not None:
            existing[new.id] = _Stored(request.tenant_id, row)  # a retry later in the batch
        rows.append(row)
    if stream.is_new:
        plan.new_streams[request.stream_id] = stream
        stream.is_new = False
    return rows


def _outcomes(plan: _Plan, base: int, at: datetime) -> tuple[list[Outcome], list[Event]]:
    """Each request's outcome, with the batch's rows turned into stored events (also
    returned, in position order)."""
    events = [
        Event(id=row[0], stream_id=row[2], stream_type=row[3], seq=row[4],
              position=base + index + 1, type=row[5], data=msgspec.Raw(row[6]),
              meta=msgspec.Raw(row[7]), created_at=at)
        for index, row in enumerate(plan.rows)
    ]
    outcomes: list[Outcome] = [
        outcome if isinstance(outcome, SpoolError)
        else [events[item] if isinstance(item, int) else item for item in outcome]
        for outcome in plan.outcomes
    ]
    return outcomes, events


async def _fetch_existing(conn: Any, batch: list[_Request]) -> dict[uuid.UUID, _Stored]:
    """Stored events among the ids callers supplied (ids the store assigns are new)."""
    ids = [event.id for request in batch for event in request.events if event.id is not None]
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS}, tenant_id FROM events WHERE id = ANY($1::uuid[])", ids
    )
    return {row[0]: _Stored(row[9], event_of(row)) for row in rows}


async def _fetch_streams(conn: Any, batch: list[_Request]) -> dict[str, _Stream]:
    """The streams of the batch with their last event's seq and type (under the head lock)."""
    rows = await conn.fetch(
        "SELECT s.stream_id, s.tenant_id, s.stream_type, coalesce(e.seq, 0), e.type"
        " FROM streams s LEFT JOIN LATERAL (SELECT seq, type FROM events e"
        "  WHERE e.stream_id = s.stream_id ORDER BY e.seq DESC LIMIT 1) e ON true"
        " WHERE s.stream_id = ANY($1::text[])", list({request.stream_id for request in batch})
    )
    return {row[0]: _Stream(row[1], row[2], row[3], row[4]) for row in rows}


# One statement: take n positions from the head (waiting for its row lock, which is then held
# until commit), write the events and the streams seen for the first time. clock_timestamp()
# is read after the lock, so created_at follows position order.
_WRITE_SQL = """
WITH head AS (
    UPDATE log_head SET position = position + $9 WHERE id = 1
    RETURNING position - $9 AS base, clock_timestamp() AS at
), new_events AS (
    INSERT INTO events (position, id, tenant_id, stream_id, stream_type, seq, type, data, meta,
                        created_at)
    SELECT h.base + x.o, x.i, x.t, x.s, x.st, x.q, x.ty, x.d, x.m, h.at
    FROM head h, unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                        $6::text[], $7::json[], $8::json[])
                 WITH ORDINALITY AS x(i, t, s, st, q, ty, d, m, o)
), new_streams AS (
    INSERT INTO streams (stream_id, tenant_id, stream_type, created_at)
    SELECT y.s, y.t, y.st, h.at
    FROM head h, unnest($10::text[], $11::text[], $12::text[]) AS y(s, t, st)
)
SELECT base, at FROM head
"""

# A group's write: the same, with each row's created_at given (an import keeps the times its
# events happened at, so the log's created_at follows position order except for imports).
_WRITE_DATED_SQL = """
WITH head AS (
    UPDATE log_head SET position = position + $9 WHERE id = 1 RETURNING position - $9 AS base
), new_events AS (
    INSERT INTO events (position, id, tenant_id, stream_id, stream_type, seq, type, data, meta,
                        created_at)
    SELECT h.base + x.o, x.i, x.t, x.s, x.st, x.q, x.ty, x.d, x.m, x.c
    FROM head h, unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                        $6::text[], $7::json[], $8::json[], $13::timestamptz[])
                 WITH ORDINALITY AS x(i, t, s, st, q, ty, d, m, c, o)
), new_streams AS (
    INSERT INTO streams (stream_id, tenant_id, stream_type, created_at)
    SELECT y.s, y.t, y.st, clock_timestamp()
    FROM head h, unnest($10::text[], $11::text[], $12::text[]) AS y(s, t, st)
)
SELECT base FROM head
"""

# Collisions that mean "memory was stale": a seq or an id taken by another process.
_STALE_CONSTRAINTS = {"events_stream_id_seq_key", "events_id_key", "streams_pkey"}


async def _write(conn: Any, plan: _Plan) -> tuple[int, datetime]:
    """Write the plan; returns the position before its first row and its created_at."""
    columns = list(zip(*plan.rows, strict=True))
    new_streams = list(plan.new_streams.items())
    try:
        base, at = await conn.fetchrow(
            _WRITE_SQL,
            *columns,
            len(plan.rows),
            [stream_id for stream_id, _ in new_streams],
            [stream.tenant_id for _, stream in new_streams],
            [stream.stream_type for _, stream in new_streams],
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name in _STALE_CONSTRAINTS:
            raise _StaleVersions(f"collision on {exc.constraint_name}") from exc
        raise
    return int(base), at


async def _write_dated(conn: Any, plan: _Plan, created_at: list[datetime]) -> int:
    """Write a group's plan (under the head lock, so no collision can happen); returns the
    position before its first row."""
    columns = list(zip(*plan.rows, strict=True))
    new_streams = list(plan.new_streams.items())
    base = await conn.fetchval(
        _WRITE_DATED_SQL, *columns, len(plan.rows),
        [stream_id for stream_id, _ in new_streams],
        [stream.tenant_id for _, stream in new_streams],
        [stream.stream_type for _, stream in new_streams], created_at,
    )
    return int(base)


# --- validation and settling ---------------------------------------------------------------------


def _validate_append(
    stream_id: str, stream_type: str, events: Sequence[NewEvent], expected_seq: int | None,
    *, max_events: int = MAX_EVENTS_PER_APPEND,
) -> None:
    _check_name(stream_id, "stream_id", 200)
    if stream_type not in STREAM_TYPES:
        raise InvalidRequest(f"stream_type must be one of {', '.join(STREAM_TYPES)}",
                             field="stream_type")
    if not events:
        raise InvalidRequest("at least one event is required", field="events")
    if len(events) > max_events:
        raise InvalidRequest(f"at most {max_events} events per append", field="events")
    supplied = [event.id for event in events if event.id is not None]
    if len(set(supplied)) != len(supplied):
        raise InvalidRequest("event ids must be unique within an append", field="events[].id")
    for index, event in enumerate(events):
        _check_name(event.type, f"events[{index}].type", 100)
        _check_json_object(event.data, index, "data")
        if event.meta != b"{}":
            _check_json_object(event.meta, index, "meta")
    if expected_seq is not None and expected_seq < 0:
        raise InvalidRequest("expected_seq must be >= 0", field="expected_seq")


def _check_name(value: str, field: str, max_length: int) -> None:
    """Ids and type names: non-empty, bounded, and storable as Postgres text."""
    valid = 0 < len(value) <= max_length and "\x00" not in value
    if valid:
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate
            valid = False
    if not valid:
        raise InvalidRequest(f"{field} must be 1 to {max_length} characters of text without NUL",
                             field=field)


def _check_json_object(raw: bytes, index: int, name: str) -> None:
    """Refuse what Postgres' json type would refuse, before it can fail a shared batch."""
    try:
        value = _json_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        field = f"events[{index}].{name}"
        raise InvalidRequest(f"{field} is not valid JSON: {exc}", field=field) from exc
    if not isinstance(value, dict):
        field = f"events[{index}].{name}"
        raise InvalidRequest(f"{field} must be a JSON object", field=field)


# Decimal for floats: Postgres' json takes any number, msgspec's float would refuse 1e400.
_json_decoder = msgspec.json.Decoder(float_hook=decimal.Decimal)



def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller was cancelled; the outcome stands in the log regardless
        return
    if isinstance(outcome, SpoolError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

