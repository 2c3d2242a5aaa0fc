"""Tasks: a ``task`` stream whose id is the task id (``tsk_``): ``task_created`` (the whole task),
``task_updated`` (only the fields that changed), ``task_commented``, ``task_deleted``. The HTTP
API and the runtime's ``task_create``/``task_update`` tools both go through ``Tasks``.

Dependencies. A task that is not done and has a dependency that is not done is ``blocked``; the
status it had (or was given) is kept in ``resume_status`` and taken back, by the engine, when
its last dependency is done (a deleted dependency no longer holds it back). A dependency that
stops being done blocks its unfinished dependents again. ``done`` cannot be set while a
dependency is not done (Conflict). ``blocked`` set by hand (``resume_status`` null) stays until
changed by hand.

Writes decide what they can from the task's own stream and the ``tasks`` view, and append with
``expected_seq``. The rule is kept by the ``TaskReactor`` (engine/domain/task_reactor.py), from
the view's work list; ``Tasks`` makes it, the engine starts and stops it.

Cycles. Adding dependencies takes a per-tenant advisory lock, waits until the view has applied
the log up to its head, checks the new edges against the view and appends before unlocking:
two concurrent changes cannot each add one half of a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from engine.domain.agents import Agents
from engine.domain.boards import (
    BOARD_COLUMNS,
    CATCH_UP_SECONDS,
    Board,
    Boards,
    LongText,
    board_of,
    view_position,
    wait_for_view,
)
from engine.domain.decide import retrying
from engine.domain.task_reactor import TaskReactor
from engine.errors import Conflict, InvalidRequest, NotFound, Unavailable
from engine.events import (
    NUL_FREE,
    Event,
    EventMeta,
    TaskCommented,
    TaskCreated,
    TaskDeleted,
    TaskPriority,
    TaskStatus,
    TaskUpdated,
    decoded,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.infra.db import connection, fetch_page
from engine.log.store import EventStore
from engine.pages import Page, check_cursor, check_limit, page_of
from engine.projections.tasks import TASK_TYPES, TasksProjection

STATUSES: tuple[TaskStatus, ...] = ("inbox", "in_progress", "review", "done", "blocked")
PRIORITIES: tuple[TaskPriority, ...] = ("low", "normal", "high", "urgent")
MAX_DEPENDENCIES = 100

_Title = Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=500)]
_Due = Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with an offset; stored in UTC
_Dependencies = Annotated[list[str], msgspec.Meta(max_length=MAX_DEPENDENCIES)]
_Ref = Annotated[str, msgspec.Meta(max_length=100)]


class Task(msgspec.Struct):
    id: str
    board_id: str
    title: str
    description: str | None
    status: TaskStatus
    resume_status: TaskStatus | None  # while blocked by dependencies: the status to go back to
    priority: TaskPriority
    assignee_id: str | None
    due_at: datetime | None
    dependencies: list[str]
    created_at: datetime
    updated_at: datetime
    last_seq: int


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    board_id: _Ref
    title: _Title
    description: LongText | None = None
    status: TaskStatus = "inbox"
    priority: TaskPriority = "normal"
    assignee_id: _Ref | None = None
    due_at: _Due | None = None
    dependencies: _Dependencies = []


class TaskPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Each field given replaces the current one (``null`` clears the nullable ones)."""

    board_id: _Ref | UnsetType = UNSET
    title: _Title | UnsetType = UNSET
    description: LongText | UnsetType | None = UNSET
    status: TaskStatus | UnsetType = UNSET
    priority: TaskPriority | UnsetType = UNSET
    assignee_id: _Ref | UnsetType | None = UNSET
    due_at: _Due | UnsetType | None = UNSET
    dependencies: _Dependencies | UnsetType = UNSET


class Comment(msgspec.Struct):
    id: str
    task_id: str
    body: str
    author: str | None
    created_at: datetime


class CommentIn(msgspec.Struct, forbid_unknown_fields=True):
    body: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=20_000)]


class BlockedTask(msgspec.Struct):
    task_id: str
    blocked_by: list[str]  # its dependencies that are not done (none: blocked by hand)
    resume_status: TaskStatus | None


class BoardSnapshot(msgspec.Struct):
    """A board as the view held it at ``position``: every count is exact; each status lists at
    most ``limit`` tasks, most urgent first, then oldest first."""

    board: Board
    position: int
    counts: dict[str, int]  # per status, and "total"
    tasks: dict[str, list[Task]]  # per status
    blocked: list[BlockedTask]


class Tasks:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, agents: Agents,
                 boards: Boards) -> None:
        self._pool = pool
        self._store = store
        self._agents = agents
        self._boards = boards
        self.catch_up_seconds = CATCH_UP_SECONDS
        self.projection = TasksProjection()
        self.reactor = TaskReactor(pool, store, self.projection)
        # One dependency change at a time per process: each holds a connection while it waits
        # for the tenant's advisory lock and the view, and the pool must keep some for appends.
        self._dependency_lock = asyncio.Lock()

    # --- writes -------------------------------------------------------------------------------

    async def create(
        self, tenant_id: str, body: TaskIn, *, meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Task, Event]:
        event_id = derived_event_id(tenant_id, "tasks.create", idempotency_key)
        if event_id is not None:  # a retry gets the first result, whatever happened since
            first = await self._store.event_by_id(event_id, tenant_id=tenant_id)
            if first is not None:
                return await self._as_of(tenant_id, first), first
        await self._boards.get(tenant_id, body.board_id, field="board_id")
        await self._check_assignee(tenant_id, body.assignee_id)
        _check_dependency_ids(body.dependencies, None)
        task_id = new_id("tsk")
        open_deps: list[str] = []
        if body.dependencies:  # a new task has no dependents: no cycle, no lock
            open_deps = await self._dependencies(tenant_id, task_id, body.dependencies,
                                                 added=body.dependencies)
        status, resume_status = _status(body.status, open_deps)
        data = TaskCreated(
            board_id=body.board_id, title=body.title, description=body.description,
            status=status, resume_status=resume_status, priority=body.priority,
            assignee_id=body.assignee_id, due_at=_utc(body.due_at),
            dependencies=list(body.dependencies),
        )
        [event] = await self._store.append(
            task_id, [new_event(data, id=event_id, meta=meta)], tenant_id=tenant_id,
            stream_type="task", expected_seq=0,
        )
        return await self._as_of(tenant_id, event), event

    async def update(
        self, tenant_id: str, task_id: str, patch: TaskPatch, *, meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Task, Event | None]:
        """Apply ``patch``; the event holds only what changed (no change, no event)."""
        event_id = derived_event_id(tenant_id, f"tasks.{task_id}.update", idempotency_key)
        if (first := await self._first(tenant_id, event_id, task_id)) is not None:
            return await self._as_of(tenant_id, first), first
        if patch.dependencies is not UNSET:
            _check_dependency_ids(patch.dependencies, task_id)
        return await retrying(lambda: self._update(tenant_id, task_id, patch, event_id, meta))

    async def _update(
        self, tenant_id: str, task_id: str, patch: TaskPatch, event_id: Any,
        meta: EventMeta | None,
    ) -> tuple[Task, Event | None]:
        events = await self._events(tenant_id, task_id)
        task = _live(fold_task(events), task_id)
        if patch.board_id is not UNSET and patch.board_id != task.board_id:
            await self._boards.get(tenant_id, patch.board_id, field="board_id")
        if patch.assignee_id is not UNSET and patch.assignee_id != task.assignee_id:
            await self._check_assignee(tenant_id, patch.assignee_id)
        deps = task.dependencies if patch.dependencies is UNSET else list(patch.dependencies)
        added = [dep for dep in deps if dep not in task.dependencies]
        # A done task stays done when its dependencies change; only an explicit status asks.
        decide_status = patch.status is not UNSET or (deps != task.dependencies
                                                      and task.status != "done")
        requested = (patch.status if patch.status is not UNSET
                     else task.resume_status or task.status)
        needs_open = decide_status and requested != "blocked" and bool(deps)

        async def append(open_deps: list[str]) -> tuple[Task, Event | None]:
            status, resume_status = ((_status(requested, open_deps)) if decide_status
                                     else (task.status, task.resume_status))
            changes = _changes(task, patch, deps, status, resume_status)
            if not changes:
                return task, None
            [event] = await self._store.append(
                task_id, [new_event(TaskUpdated(**changes), id=event_id, meta=meta)],
                tenant_id=tenant_id, stream_type="task", expected_seq=events[-1].seq,
            )
            return _live(fold_task([*events, event]), task_id), event

        if added:  # new edges: checked for cycles under the tenant's lock, appended under it
            async with self._locked(tenant_id) as conn:
                open_deps = await self._dependencies(tenant_id, task_id, deps, added=added,
                                                     locked=conn)
                return await append(open_deps if needs_open else [])
        if needs_open:
            return await append(await self._dependencies(tenant_id, task_id, deps, added=[]))
        return await append([])

    async def delete(
        self, tenant_id: str, task_id: str, *, meta: EventMeta | None = None,
    ) -> Event:
        """Delete the task; tasks that depend on it no longer wait for it."""

        async def attempt() -> Event:
            events = await self._events(tenant_id, task_id)
            _live(fold_task(events), task_id)
            [event] = await self._store.append(
                task_id, [new_event(TaskDeleted(), meta=meta)], tenant_id=tenant_id,
                stream_type="task", expected_seq=events[-1].seq,
            )
            return event

        return await retrying(attempt)

    async def comment(
        self, tenant_id: str, task_id: str, body: CommentIn, *, meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Comment, Event]:
        event_id = derived_event_id(tenant_id, f"tasks.{task_id}.comments", idempotency_key)
        if (first := await self._first(tenant_id, event_id, task_id)) is not None:
            return _commented(first), first

        async def attempt() -> tuple[Comment, Event]:
            events = await self._events(tenant_id, task_id)
            _live(fold_task(events), task_id)
            data = TaskCommented(comment_id=new_id("cmt"), body=body.body)
            [event] = await self._store.append(  # expected_seq: never after a deletion
                task_id, [new_event(data, id=event_id, meta=meta)], tenant_id=tenant_id,
                stream_type="task", expected_seq=events[-1].seq,
            )
            return _commented(event), event

        return await retrying(attempt)

    # --- reads --------------------------------------------------------------------------------

    async def get(self, tenant_id: str, task_id: str) -> Task:
        return _live(fold_task(await self._events(tenant_id, task_id)), task_id)

    async def comments(
        self, tenant_id: str, task_id: str, *, after: str | None, limit: int,
    ) -> Page[Comment]:
        check_cursor(after, "cmt")
        check_limit(limit)
        events = await self._events(tenant_id, task_id)
        _live(fold_task(events), task_id)
        comments = sorted((c for e in events if (c := _comment(e)) is not None),
                          key=lambda c: c.id)
        return page_of([c for c in comments if c.id > (after or "")][: limit + 1], limit,
                       lambda c: c.id)

    async def list_tasks(
        self, tenant_id: str, *, status: str | None = None, assignee_id: str | None = None,
        board_id: str | None = None, after: str | None = None, limit: int = 50,
        min_position: int | None = None,
    ) -> Page[Task]:
        """Tasks from the view, in id order, filtered; ``min_position`` waits for the view."""
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        check_cursor(after, "tsk")
        check_limit(limit)
        await wait_for_view(self._pool, min_position, self.catch_up_seconds)
        return await fetch_page(
            self._pool, "listing tasks",
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1"
            " AND ($2::text IS NULL OR status = $2)"
            " AND ($3::text IS NULL OR assignee_id = $3)"
            " AND ($4::text IS NULL OR board_id = $4)"
            " AND task_id > $5 ORDER BY task_id LIMIT $6",
            tenant_id, status, assignee_id, board_id, after=after, limit=limit, item=task_of,
            cursor=lambda t: t.id,
        )

    async def snapshot(
        self, tenant_id: str, board_id: str, *, limit: int = 100,
        min_position: int | None = None,
    ) -> BoardSnapshot:
        """The board from the view, read in one repeatable-read transaction: one cut."""
        check_limit(limit)
        if not is_id(board_id, "brd"):
            raise NotFound(f"board {board_id!r} not found")
        await wait_for_view(self._pool, min_position, self.catch_up_seconds)
        try:
            return await self._snapshot(tenant_id, board_id, limit)
        except NotFound:  # perhaps just created: let the view catch up with the log first
            await wait_for_view(self._pool, await self._store.head(), self.catch_up_seconds)
            return await self._snapshot(tenant_id, board_id, limit)

    async def _snapshot(self, tenant_id: str, board_id: str, limit: int) -> BoardSnapshot:
        async with connection(self._pool, "reading a board snapshot") as conn, \
                conn.transaction(isolation="repeatable_read", readonly=True):
            board = await conn.fetchrow(
                f"SELECT {BOARD_COLUMNS} FROM boards WHERE board_id = $1 AND tenant_id = $2"
                " AND deleted_at IS NULL", board_id, tenant_id)
            if board is None:
                raise NotFound(f"board {board_id!r} not found")
            position = await view_position(conn)
            counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
            for row in await conn.fetch(
                    "SELECT status, count(*) FROM tasks WHERE board_id = $1 GROUP BY status",
                    board_id):
                counts[row[0]] = row[1]
            rows = await conn.fetch(
                f"SELECT {TASK_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY status"
                f" ORDER BY {_URGENT_FIRST}, task_id) AS n FROM tasks WHERE board_id = $1) t"
                f" WHERE n <= $2 ORDER BY {_URGENT_FIRST}, task_id", board_id, limit)
            blocked = await conn.fetch(
                "SELECT t.task_id, t.resume_status, array(SELECT u.dep FROM unnest(t.dependencies)"
                " WITH ORDINALITY AS u(dep, i) JOIN tasks p ON p.task_id = u.dep"
                " AND p.status <> 'done' ORDER BY u.i) FROM tasks t"
                f" WHERE t.board_id = $1 AND t.status = 'blocked' ORDER BY {_URGENT_FIRST},"
                " t.task_id LIMIT $2", board_id, limit)
        by_status: dict[str, list[Task]] = {status: [] for status in STATUSES}
        for row in rows:
            by_status[row[4]].append(task_of(row))
        return BoardSnapshot(
            board=board_of(board), position=position,
            counts={**counts, "total": sum(counts.values())}, tasks=by_status,
            blocked=[BlockedTask(task_id=row[0], blocked_by=list(row[2]), resume_status=row[1])
                     for row in blocked],
        )

    # --- helpers ------------------------------------------------------------------------------

    async def _events(self, tenant_id: str, task_id: str) -> list[Event]:
        if not is_id(task_id, "tsk"):
            raise NotFound(f"task {task_id!r} not found")
        try:
            return await self._store.read_whole_stream(task_id, tenant_id=tenant_id)
        except NotFound:
            raise NotFound(f"task {task_id!r} not found") from None

    async def _as_of(self, tenant_id: str, event: Event) -> Task:
        """The task as ``event`` left it (a retried request gets the first result)."""
        events = await self._store.read_whole_stream(event.stream_id, tenant_id=tenant_id)
        return _live(fold_task(events[: event.seq]), event.stream_id)

    async def _first(self, tenant_id: str, event_id: Any, task_id: str) -> Event | None:
        if event_id is None:
            return None
        first = await self._store.event_by_id(event_id, tenant_id=tenant_id)
        return first if first is not None and first.stream_id == task_id else None

    async def _check_assignee(self, tenant_id: str, agent_id: str | None) -> None:
        if agent_id is None:
            return
        try:
            agent = await self._agents.get(tenant_id, agent_id)
        except NotFound as exc:  # the same answer for unknown and foreign agents
            raise NotFound(exc.message, details={"field": "assignee_id"}) from exc
        if agent.status == "archived":
            raise Conflict(f"agent {agent_id!r} is archived", details={"field": "assignee_id"})

    @contextlib.asynccontextmanager
    async def _locked(self, tenant_id: str) -> AsyncIterator[Any]:
        """A connection holding the tenant's dependency lock (a transaction-level advisory
        lock) until the block ends: the caller checks and appends inside."""
        async with self._dependency_lock, \
                connection(self._pool, "locking a tenant's task dependencies") as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '5s'")
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(tenant_id))
                    yield conn
            except asyncpg.LockNotAvailableError as exc:
                raise Unavailable("another change to these tasks' dependencies is taking long;"
                                  " try again", retry_after=1) from exc

    async def _dependencies(
        self, tenant_id: str, task_id: str, deps: Sequence[str], *, added: Sequence[str],
        locked: Any = None,
    ) -> list[str]:
        """Once the view has applied the log as it stands: check that the ``added``
        dependencies exist (and, on a connection ``locked`` by ``_locked``, that none of them
        leads back to the task), and return those of ``deps`` that are not done. Without the
        lock no connection is held while waiting."""
        if locked is not None:
            head = await locked.fetchval("SELECT position FROM log_head WHERE id = 1")
            await wait_for_view(self._pool, head, self.catch_up_seconds, conn=locked)
            return await self._read_dependencies(locked, task_id, tenant_id, deps, added, True)
        await wait_for_view(self._pool, await self._store.head(), self.catch_up_seconds)
        async with connection(self._pool, "reading task dependencies") as conn:
            return await self._read_dependencies(conn, task_id, tenant_id, deps, added, False)

    @staticmethod
    async def _read_dependencies(
        conn: Any, task_id: str, tenant_id: str, deps: Sequence[str], added: Sequence[str],
        cycles: bool,
    ) -> list[str]:
        rows = await conn.fetch(
            "SELECT task_id, status FROM tasks WHERE tenant_id = $1 AND task_id = ANY($2::text[])",
            tenant_id, list(deps))
        status_of: dict[str, str] = {row[0]: row[1] for row in rows}
        for dep in added:
            field = f"dependencies[{deps.index(dep)}]"
            if dep not in status_of:
                raise NotFound(f"task {dep!r} not found", details={"field": field})
            if cycles and await conn.fetchval(_REACHES, dep, task_id):
                raise InvalidRequest(
                    f"{dep} already depends on this task (directly or through others):"
                    " a dependency cycle", field=field)
        return [dep for dep in deps if status_of.get(dep, "done") != "done"]


# Does $1 depend on $2, directly or through others?
_REACHES = (
    "WITH RECURSIVE reach(task_id) AS (SELECT $1::text UNION"
    " SELECT d.depends_on FROM task_dependencies d JOIN reach r ON d.task_id = r.task_id)"
    " SELECT EXISTS (SELECT 1 FROM reach WHERE task_id = $2)"
)
_URGENT_FIRST = "array_position(ARRAY['urgent', 'high', 'normal', 'low'], priority)"


def _lock_key(tenant_id: str) -> int:
    return zlib.crc32(f"spool.tasks.dependencies.{tenant_id}".encode())


def _status(requested: TaskStatus, open_deps: list[str]) -> tuple[TaskStatus, TaskStatus | None]:
    """(status, resume_status) for a task asked to be ``requested`` whose dependencies
    ``open_deps`` are not done."""
    if requested == "blocked":  # by hand: stays until changed by hand
        return "blocked", None
    if not open_deps:
        return requested, None
    if requested == "done":
        raise Conflict(f"the task waits for tasks that are not done: {', '.join(open_deps)}",
                       details={"field": "status", "blocked_by": open_deps})
    return "blocked", requested


def _changes(task: Task, patch: TaskPatch, deps: list[str], status: TaskStatus,
             resume_status: TaskStatus | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("board_id", "title", "description", "priority", "assignee_id", "due_at"):
        value = getattr(patch, name)
        if name == "due_at" and isinstance(value, datetime):
            value = _utc(value)
        if value is not UNSET and value != getattr(task, name):
            changes[name] = value
    if deps != task.dependencies:
        changes["dependencies"] = deps
    if status != task.status:
        changes["status"] = status
    if resume_status != task.resume_status:
        changes["resume_status"] = resume_status
    return changes


def _check_dependency_ids(deps: Sequence[str], task_id: str | None) -> None:
    for i, dep in enumerate(deps):
        field = f"dependencies[{i}]"
        if dep == task_id:
            raise InvalidRequest("a task cannot depend on itself", field=field)
        if dep in deps[:i]:
            raise InvalidRequest(f"{dep} is listed twice", field=field)
        if not is_id(dep, "tsk"):
            raise NotFound(f"task {dep!r} not found", details={"field": field})


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _live(task: Task | None, task_id: str) -> Task:
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    return task


def fold_task(events: Sequence[Event]) -> Task | None:
    """The task after ``events`` (its stream from seq 1); None once deleted (or if it is not a
    task). Events the view does not know (``decoded``) only move ``updated_at`` and
    ``last_seq``, as in the view."""
    task: Task | None = None
    for event in events:
        data = decoded(event, TASK_TYPES)
        if isinstance(data, TaskCreated):
            task = Task(
                id=event.stream_id, board_id=data.board_id, title=data.title,
                description=data.description, status=data.status,
                resume_status=data.resume_status, priority=data.priority,
                assignee_id=data.assignee_id, due_at=data.due_at,
                dependencies=list(data.dependencies), created_at=event.created_at,
                updated_at=event.created_at, last_seq=event.seq,
            )
            continue
        if task is None:
            continue  # nothing before its creation counts
        if isinstance(data, TaskDeleted):
            return None
        if isinstance(data, TaskUpdated):
            changes = {name: value for name in data.__struct_fields__
                       if name != "cause" and (value := getattr(data, name)) is not UNSET}
            task = msgspec.structs.replace(task, **changes)
        task.updated_at, task.last_seq = event.created_at, event.seq
    return task


class _Meta(msgspec.Struct):
    actor: str | None = None


def _comment(event: Event) -> Comment | None:
    data = decoded(event, TASK_TYPES)
    if not isinstance(data, TaskCommented):
        return None
    return Comment(id=data.comment_id, task_id=event.stream_id, body=data.body,
                   author=msgspec.json.decode(event.meta, type=_Meta).actor,
                   created_at=event.created_at)


def _commented(event: Event) -> Comment:
    comment = _comment(event)
    if comment is None:  # an Idempotency-Key reused for something else
        raise Conflict("this Idempotency-Key was used for another request",
                       details={"field": "Idempotency-Key"})
    return comment


TASK_COLUMNS = ("task_id, board_id, title, description, status, resume_status, priority,"
                " assignee_id, due_at, dependencies, created_at, updated_at, seq")


def task_of(row: Any) -> Task:
    return Task(id=row[0], board_id=row[1], title=row[2], description=row[3], status=row[4],
                resume_status=row[5], priority=row[6], assignee_id=row[7], due_at=row[8],
                dependencies=list(row[9]), created_at=row[10], updated_at=row[11],
                last_seq=row[12])
