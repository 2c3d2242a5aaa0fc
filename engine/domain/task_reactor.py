"""The task reactor: the changes the engine makes to tasks itself, so the dependency rule holds
(engine/domain/tasks.py) and the tasks of a deleted board go with it.

It reads the ``tasks`` view's work list (tasks whose ``open_dependencies`` count disagrees with
their status; tasks of deleted boards) and appends the change to each task's stream with
``expected_seq`` = the seq the view saw and an event id derived from it. The view is a
projection (written with its checkpoint), so whatever process runs the reactor next finds the
same work after any crash, and two reactors can never both apply one change.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from engine.domain.boards import wait_for_view
from engine.errors import SpoolError, StreamMoved, Unavailable
from engine.events import EventMeta, TaskDeleted, TaskUpdated, new_event
from engine.ids import idempotent_uuid
from engine.infra.background import cancel
from engine.infra.db import connection
from engine.log.store import EventStore
from engine.logging import get_logger
from engine.projections.tasks import TasksProjection

log = get_logger("tasks")

REACTOR_ACTOR = "spool:tasks"  # meta.actor of the changes the engine makes itself

_WANTING_STATUS = (
    "SELECT task_id, tenant_id, seq, status, resume_status FROM tasks"
    " WHERE (status = 'blocked' AND resume_status IS NOT NULL AND open_dependencies = 0)"
    "    OR (status NOT IN ('blocked', 'done') AND open_dependencies > 0)"
    " ORDER BY task_id LIMIT $1"
)
_ON_DELETED_BOARDS = (
    "SELECT t.task_id, t.tenant_id, t.seq FROM boards b JOIN tasks t ON t.board_id = b.board_id"
    " WHERE b.deleted_at IS NOT NULL ORDER BY t.task_id LIMIT $1"
)
_BATCH = 500


class TaskReactor:
    """Keeps the dependency rule and deletes the tasks of deleted boards, from the view's work
    list. Each change is appended with ``expected_seq`` = the task's seq in the view and an
    event id derived from it: a change decided on a stale view is refused (the view catches up
    and the next pass decides again), and two processes deciding the same change write it
    once. It runs after every page of the ``tasks`` projection that held board or task events
    (once that page has committed), and every ``poll`` seconds (another process may run the
    projection)."""

    def __init__(self, pool: asyncpg.Pool, store: EventStore, projection: TasksProjection, *,
                 poll: float = 1.0) -> None:
        self._pool = pool
        self._store = store
        self._projection = projection
        self._poll = poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="spool.tasks.reactor")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        changed = self._projection.changed
        while True:
            try:
                await self.react()
            except asyncio.CancelledError:
                raise
            except (SpoolError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("tasks.reactor_retry", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await changed.wait()
            if changed.is_set():
                changed.clear()
                with contextlib.suppress(Unavailable):  # the page's commit: a moment away
                    await wait_for_view(self._pool, self._projection.changed_position, 2.0)

    async def react(self) -> int:
        """One pass over the work list; returns how many changes were appended."""
        async with connection(self._pool, "reading the tasks work list") as conn:
            deletions = await conn.fetch(_ON_DELETED_BOARDS, _BATCH)
            statuses = await conn.fetch(_WANTING_STATUS, _BATCH)
        appended = 0
        for task_id, tenant_id, seq in deletions:
            appended += await self._append(task_id, tenant_id, seq,
                                           TaskDeleted(cause="board_deleted"))
        deleted = {row[0] for row in deletions}
        for task_id, tenant_id, seq, status, resume_status in statuses:
            if task_id in deleted:
                continue
            if status == "blocked":
                data = TaskUpdated(status=resume_status, resume_status=None,
                                   cause="dependencies_done")
            else:
                data = TaskUpdated(status="blocked", resume_status=status,
                                   cause="dependency_not_done")
            appended += await self._append(task_id, tenant_id, seq, data)
        if appended:
            log.debug("tasks.reacted", appended=appended)
        return appended

    async def _append(self, task_id: str, tenant_id: str, seq: int,
                      data: TaskUpdated | TaskDeleted) -> int:
        event_id = idempotent_uuid("tasks.reactor", task_id, str(seq))
        try:
            await self._store.append(
                task_id, [new_event(data, id=event_id, meta=EventMeta(actor=REACTOR_ACTOR))],
                tenant_id=tenant_id, stream_type="task", expected_seq=seq,
            )
        except StreamMoved:  # the task moved on since the view saw it: the next pass decides
            return 0
        return 1
