"""The ``tasks`` projection: boards and tasks as people look at them (the ``boards``, ``tasks``
and ``task_dependencies`` tables), folded from the board and task streams.

Besides each task's fields it keeps ``open_dependencies``: how many of the task's dependencies
exist and are not done. That count is what the engine's dependency rule reads
(engine/domain/tasks.py, ``TaskReactor``): a task blocked by its dependencies whose count falls
to 0 is unblocked, a task at work whose count rises above 0 is blocked. Being part of the
projection, the count is written in the same transaction as the checkpoint: whoever runs the
reactor next finds it, whatever crashed in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from msgspec import UNSET

from engine.events import (
    BoardCreated,
    BoardDeleted,
    BoardUpdated,
    Event,
    TaskCreated,
    TaskDeleted,
    TaskUpdated,
    decoded,
)
from engine.log.store import Committed
from engine.logging import get_logger

log = get_logger("projections.tasks")

NAME = "tasks"
TASK_TYPES = frozenset({"task_created", "task_updated", "task_deleted", "task_commented"})
BOARD_TYPES = frozenset({"board_created", "board_updated", "board_deleted"})

# TaskUpdated's fields that are columns of the same name (dependencies are handled apart).
_TASK_COLUMNS = ("board_id", "title", "description", "status", "resume_status", "priority",
                 "assignee_id", "due_at")
_BOARD_COLUMNS = ("name", "description")

# Insert a created task (nothing if it exists); returns whether it was inserted, and whether
# any task lists it as a dependency (both read before the insert: it touches neither).
_INSERT_TASK = (
    "WITH inserted AS (INSERT INTO tasks (task_id, tenant_id, board_id, title, description,"
    " status, resume_status, priority, assignee_id, due_at, dependencies, open_dependencies,"
    " seq, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $13)"
    " ON CONFLICT (task_id) DO NOTHING RETURNING 1)"
    " SELECT EXISTS (SELECT 1 FROM inserted),"
    " EXISTS (SELECT 1 FROM task_dependencies WHERE depends_on = $1)"
)

# A task's open dependencies: those that exist (not deleted) and are not done.
_COUNT_OPEN = (
    "UPDATE tasks t SET open_dependencies = (SELECT count(*) FROM task_dependencies d"
    " JOIN tasks p ON p.task_id = d.depends_on WHERE d.task_id = t.task_id"
    " AND p.status <> 'done')"
)


class TasksProjection:
    """The projection. ``changed`` is set (with ``changed_position``, the last position of the
    page) whenever a page held board or task events: the reactor waits for that page's commit,
    then looks for work."""

    name = NAME

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.changed_position = 0

    def touches(self, event: Event) -> bool:
        return event.stream_type in ("task", "board")

    async def apply(self, conn: Any, events: Sequence[Committed]) -> None:
        touched = False
        held = _Held()
        for tenant_id, event in events:
            if event.stream_type == "task":
                await _apply_task(conn, tenant_id, event, held)
                touched = True
            elif event.stream_type == "board":
                await _apply_board(conn, tenant_id, event)
                touched = True
        await held.write(conn)
        if touched:
            self.changed_position = events[-1][1].position
            self.changed.set()


async def _apply_board(conn: Any, tenant_id: str, event: Event) -> None:
    data = decoded(event, BOARD_TYPES)
    if isinstance(data, BoardCreated):
        await conn.execute(
            "INSERT INTO boards (board_id, tenant_id, name, description, seq, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (board_id) DO NOTHING",
            event.stream_id, tenant_id, data.name, data.description, event.seq,
            event.created_at,
        )
        return
    changes: dict[str, Any] = {}
    if isinstance(data, BoardUpdated):
        changes = {c: v for c in _BOARD_COLUMNS if (v := getattr(data, c)) is not UNSET}
    elif isinstance(data, BoardDeleted):
        changes = {"deleted_at": event.created_at}
    await _update(conn, "boards", "board_id", event, changes)


class _Held:
    """A page's plain task updates (neither status nor dependencies: nothing the projection
    reads back), held back and written together, one pipelined ``executemany`` per statement,
    instead of a round trip each. Everything held is written before anything else is done to a
    task with a held update, and before a held task gets an update by another statement (so
    seq and updated_at end as its last event left them). Other tasks, boards and dependency
    counts do not read what a plain update writes."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[Any, ...]]] = {}  # statement -> its arguments, in order
        self._tasks: dict[str, str] = {}  # task id -> the statement of its held update

    async def hold(self, conn: Any, task_id: str, sql: str, args: tuple[Any, ...]) -> None:
        if self._tasks.get(task_id, sql) != sql:
            await self.write(conn)
        self._tasks[task_id] = sql
        self._rows.setdefault(sql, []).append(args)

    async def before(self, conn: Any, task_id: str) -> None:
        if task_id in self._tasks:
            await self.write(conn)

    async def write(self, conn: Any) -> None:
        for sql, rows in self._rows.items():
            await conn.executemany(sql, rows)
        self._rows.clear()
        self._tasks.clear()


async def _apply_task(conn: Any, tenant_id: str, event: Event, held: _Held) -> None:
    data = decoded(event, TASK_TYPES)
    task_id = event.stream_id
    changes: dict[str, Any] = {}
    if isinstance(data, TaskUpdated):
        changes = {c: v for c in _TASK_COLUMNS if (v := getattr(data, c)) is not UNSET}
        if data.dependencies is not UNSET:
            changes["dependencies"] = data.dependencies
    if (not isinstance(data, TaskCreated | TaskDeleted) and "status" not in changes
            and "dependencies" not in changes):
        # (on a task with no row, i.e. deleted, it has no effect, as nothing else does)
        await held.hold(conn, task_id, *_plain_update(event, changes))
        return
    await held.before(conn, task_id)
    if isinstance(data, TaskCreated):
        inserted, has_dependents = await conn.fetchrow(
            _INSERT_TASK, task_id, tenant_id, data.board_id, data.title, data.description,
            data.status, data.resume_status, data.priority, data.assignee_id, data.due_at,
            data.dependencies, event.seq, event.created_at,
        )
        # A task's dependency rows exist only while its row does: a task just inserted has
        # none to delete, and without dependencies its count stays 0.
        if not inserted or data.dependencies:
            await _set_dependencies(conn, task_id, data.dependencies, fresh=bool(inserted))
        if has_dependents:  # only in a log made by hand
            await _recount_dependents(conn, task_id)
        return
    if isinstance(data, TaskDeleted):
        was = await conn.fetchval("DELETE FROM tasks WHERE task_id = $1 RETURNING status",
                                  task_id)
        if was is None:
            return  # deleted already
        await conn.execute("DELETE FROM task_dependencies WHERE task_id = $1", task_id)
        if was != "done":  # a deleted dependency no longer holds anyone back
            await _recount_dependents(conn, task_id)
        return
    was = await _update(conn, "tasks", "task_id", event, changes, old="status")
    if was is None:
        return  # deleted (nothing applies to a deleted task)
    if "dependencies" in changes:
        await _set_dependencies(conn, task_id, changes["dependencies"])
    if "status" in changes and (was == "done") != (changes["status"] == "done"):
        await _recount_dependents(conn, task_id)


async def _update(conn: Any, table: str, key: str, event: Event, changes: dict[str, Any], *,
                  old: str | None = None) -> Any:
    """Set ``changes`` (column names from the fixed lists above), and the row's seq and
    updated_at: every event of the stream moves those. With ``old``, returns that column's
    value from before the update, None if there is no row (read in the same statement: one
    round trip per event, which is most of a rebuild's time)."""
    assignments, args = _assignments(event, changes)
    if old is None:
        await conn.execute(f"UPDATE {table} SET {assignments} WHERE {key} = $1", *args)
        return None
    return await conn.fetchval(  # the self-joined row is the one before the update
        f"UPDATE {table} n SET {assignments} FROM {table} o"
        f" WHERE n.{key} = $1 AND o.{key} = n.{key} RETURNING o.{old}", *args)


def _plain_update(event: Event, changes: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``_update`` of a task without ``old``, as a statement and its arguments."""
    assignments, args = _assignments(event, changes)
    return f"UPDATE tasks SET {assignments} WHERE task_id = $1", args


def _assignments(event: Event, changes: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``SET`` for ``changes`` plus the row's seq and updated_at; arguments from $1 (the key)."""
    columns = [*changes, "seq", "updated_at"]
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=2))
    return assignments, (event.stream_id, *changes.values(), event.seq, event.created_at)


async def _set_dependencies(conn: Any, task_id: str, dependencies: list[str], *,
                            fresh: bool = False) -> None:
    """Replace the task's dependency rows (``fresh``: the task was just inserted, it has none)
    and count the open ones."""
    if not fresh:
        await conn.execute("DELETE FROM task_dependencies WHERE task_id = $1", task_id)
    if dependencies:
        await conn.execute(
            "INSERT INTO task_dependencies (task_id, depends_on)"
            " SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING", task_id, dependencies,
        )
    await conn.execute(f"{_COUNT_OPEN} WHERE t.task_id = $1", task_id)


async def _recount_dependents(conn: Any, task_id: str) -> None:
    await conn.execute(
        f"{_COUNT_OPEN} WHERE t.task_id IN"
        " (SELECT task_id FROM task_dependencies WHERE depends_on = $1)", task_id,
    )
