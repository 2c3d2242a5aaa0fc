"""Boards: a ``board`` stream whose id is the board id (``brd_``): ``board_created``,
``board_updated`` (the fields that changed), ``board_deleted``. A board holds tasks
(engine/domain/tasks.py); deleting it deletes them (the engine appends a ``task_deleted`` to
each, see ``TaskReactor``).

One board is read by folding its stream (exact); the list is read from the ``tasks``
projection's ``boards`` table, and waits for it with ``min_position`` (read-your-writes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from engine.domain.decide import retrying
from engine.errors import NotFound
from engine.events import (
    NUL_FREE,
    BoardCreated,
    BoardDeleted,
    BoardUpdated,
    Event,
    EventMeta,
    decoded,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.infra.db import fetch_page
from engine.log.store import EventStore
from engine.pages import Page, check_cursor, check_limit
from engine.projections.runner import checkpoint, require
from engine.projections.tasks import BOARD_TYPES
from engine.projections.tasks import NAME as VIEW

CATCH_UP_SECONDS = 5.0  # how long a read with min_position waits for the view

BoardName = Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
LongText = Annotated[str, NUL_FREE, msgspec.Meta(max_length=20_000)]


class Board(msgspec.Struct):
    id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    last_seq: int


class BoardIn(msgspec.Struct, forbid_unknown_fields=True):
    name: BoardName
    description: LongText | None = None


class BoardPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Each field given replaces the current one (``description: null`` clears it)."""

    name: BoardName | UnsetType = UNSET
    description: LongText | UnsetType | None = UNSET


class Deleted(msgspec.Struct):
    id: str
    deleted: bool = True


class Boards:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store
        self.catch_up_seconds = CATCH_UP_SECONDS

    async def create(
        self, tenant_id: str, body: BoardIn, *, meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Board, Event]:
        data = BoardCreated(name=body.name, description=body.description)
        event_id = derived_event_id(tenant_id, "boards.create", idempotency_key)
        [event] = await self._store.append(
            new_id("brd"), [new_event(data, id=event_id, meta=meta)], tenant_id=tenant_id,
            stream_type="board", expected_seq=0,
        )
        return await self._as_of(tenant_id, event), event

    async def get(self, tenant_id: str, board_id: str, *, field: str | None = None) -> Board:
        """The board; NotFound if unknown, another tenant's or deleted (naming ``field`` when
        the id came in a body)."""
        board = fold(await self._events(tenant_id, board_id, field=field))
        if board is None:
            raise _not_found(board_id, field)
        return board

    async def list_boards(
        self, tenant_id: str, *, after: str | None, limit: int, min_position: int | None = None,
    ) -> Page[Board]:
        check_cursor(after, "brd")
        check_limit(limit)
        await wait_for_view(self._pool, min_position, self.catch_up_seconds)
        return await fetch_page(
            self._pool, "listing boards",
            f"SELECT {BOARD_COLUMNS} FROM boards WHERE tenant_id = $1"
            " AND deleted_at IS NULL AND board_id > $2 ORDER BY board_id LIMIT $3",
            tenant_id, after=after, limit=limit, item=board_of, cursor=lambda b: b.id,
        )

    async def update(
        self, tenant_id: str, board_id: str, patch: BoardPatch, *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> tuple[Board, Event | None]:
        """Apply ``patch``; the event holds only what changed (no change, no event)."""
        event_id = derived_event_id(tenant_id, f"boards.{board_id}.update", idempotency_key)

        async def attempt() -> tuple[Board, Event | None]:
            events = await self._events(tenant_id, board_id)
            board = fold(events)
            if board is None:
                raise _not_found(board_id, None)
            changes = {name: value for name in patch.__struct_fields__
                       if (value := getattr(patch, name)) is not UNSET
                       and value != getattr(board, name)}
            if not changes:
                return board, None
            [event] = await self._store.append(
                board_id, [new_event(BoardUpdated(**changes), id=event_id, meta=meta)],
                tenant_id=tenant_id, stream_type="board", expected_seq=events[-1].seq,
            )
            return await self._as_of(tenant_id, event), event

        if (first := await self._first(tenant_id, event_id, board_id)) is not None:
            return await self._as_of(tenant_id, first), first
        return await retrying(attempt)

    async def delete(
        self, tenant_id: str, board_id: str, *, meta: EventMeta | None = None,
    ) -> Event:
        """Delete the board; its tasks are then deleted by the engine (``TaskReactor``)."""

        async def attempt() -> Event:
            events = await self._events(tenant_id, board_id)
            if fold(events) is None:
                raise _not_found(board_id, None)
            [event] = await self._store.append(
                board_id, [new_event(BoardDeleted(), meta=meta)], tenant_id=tenant_id,
                stream_type="board", expected_seq=events[-1].seq,
            )
            return event

        return await retrying(attempt)

    async def _events(self, tenant_id: str, board_id: str, *,
                      field: str | None = None) -> list[Event]:
        if not is_id(board_id, "brd"):
            raise _not_found(board_id, field)
        try:
            return await self._store.read_whole_stream(board_id, tenant_id=tenant_id)
        except NotFound:
            raise _not_found(board_id, field) from None

    async def _as_of(self, tenant_id: str, event: Event) -> Board:
        """The board as ``event`` left it (a retried request gets the first result)."""
        events = await self._store.read_whole_stream(event.stream_id, tenant_id=tenant_id)
        board = fold(events[: event.seq])
        assert board is not None
        return board

    async def _first(self, tenant_id: str, event_id: Any, stream_id: str) -> Event | None:
        if event_id is None:
            return None
        first = await self._store.event_by_id(event_id, tenant_id=tenant_id)
        return first if first is not None and first.stream_id == stream_id else None


def fold(events: list[Event]) -> Board | None:
    """The board after ``events`` (its stream from seq 1); None once deleted (or if it is not
    a board). Events the view does not know (``decoded``) only move ``last_seq``."""
    board: Board | None = None
    for event in events:
        data = decoded(event, BOARD_TYPES)
        if isinstance(data, BoardCreated):
            board = Board(id=event.stream_id, name=data.name, description=data.description,
                          created_at=event.created_at, updated_at=event.created_at,
                          last_seq=event.seq)
        elif board is None:
            continue  # nothing before its creation counts
        elif isinstance(data, BoardDeleted):
            return None
        else:
            if isinstance(data, BoardUpdated):
                changes = {name: value for name in data.__struct_fields__
                           if (value := getattr(data, name)) is not UNSET}
                board = msgspec.structs.replace(board, **changes)
            board.updated_at, board.last_seq = event.created_at, event.seq
    return board


BOARD_COLUMNS = "board_id, name, description, created_at, updated_at, seq"


def board_of(row: Any) -> Board:
    return Board(id=row[0], name=row[1], description=row[2], created_at=row[3],
                 updated_at=row[4], last_seq=row[5])


def _not_found(board_id: str, field: str | None) -> NotFound:
    return NotFound(f"board {board_id!r} not found",
                    details={"field": field} if field is not None else None)


async def wait_for_view(pool: asyncpg.Pool, position: int | None, seconds: float, *,
                        conn: Any = None) -> None:
    """Wait until the ``tasks`` projection has applied the log up to ``position``; at most
    ``seconds``, then Unavailable. Reads on ``conn`` if given."""
    await require(pool, VIEW, position, seconds, conn=conn)


async def view_position(conn: Any) -> int:
    return await checkpoint(conn, VIEW)
