"""The ``tasks`` projection and the engine's reactor on its work list, against real Postgres.

The property: for random logs of board and task events (creates, updates of any field,
dependency changes, deletes, comments; including what the service would refuse, such as
cycles, dependencies on unknown or deleted tasks, events after a deletion), applied in random
pages, the incrementally maintained view equals a from-scratch fold of each stream
(``engine.domain.tasks.fold_task``, ``engine.domain.boards.fold``)
with the open-dependency counts computed
from the folded tasks.

The reactor: work left by a process that died between a dependency becoming done and the
dependent's unblocking is done by the next engine; two reactors deciding the same change at
once write it once.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from engine.domain import boards as boards_module
from engine.domain.boards import BOARD_COLUMNS, BoardIn, board_of, wait_for_view
from engine.domain.task_reactor import TaskReactor
from engine.domain.tasks import (
    PRIORITIES,
    STATUSES,
    TASK_COLUMNS,
    TaskIn,
    TaskPatch,
    fold_task,
    task_of,
)
from engine.engine import Engine
from engine.events import (
    BoardCreated,
    BoardDeleted,
    BoardUpdated,
    Event,
    EventData,
    TaskCommented,
    TaskCreated,
    TaskDeleted,
    TaskUpdated,
    encode,
)
from engine.ids import new_id
from engine.log.store import Committed
from engine.projections.tasks import TasksProjection
from engine.settings import Settings
from tests.helpers_projections import VIEW_SETTINGS, apply_in_slices

TASKS = 6
BOARDS = 2


# --- generated logs ----------------------------------------------------------------------------

_text = st.text("abcxyz ", min_size=1, max_size=6)
_maybe_text = st.none() | _text
_status = st.sampled_from(STATUSES)
_due = st.none() | st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1),
                                timezones=st.just(UTC))
_deps = st.lists(st.integers(0, TASKS - 1), unique=True, max_size=4)
_task_fields = {
    "board": st.integers(0, BOARDS - 1), "title": _text, "description": _maybe_text,
    "status": _status, "resume_status": st.none() | _status,
    "priority": st.sampled_from(PRIORITIES), "assignee_id": st.none() | st.just("agt_x"),
    "due_at": _due, "dependencies": _deps,
}
_ops = st.one_of(
    st.tuples(st.just("create"), st.integers(0, TASKS - 1), st.fixed_dictionaries(_task_fields)),
    st.tuples(st.just("update"), st.integers(0, TASKS - 1),
              st.fixed_dictionaries({}, optional={
                  **_task_fields,
                  "cause": st.sampled_from(["dependencies_done", "dependency_not_done"])})),
    st.tuples(st.just("update"), st.integers(0, TASKS - 1),  # status and dependency churn
              st.fixed_dictionaries({"status": _status}, optional={"dependencies": _deps})),
    st.tuples(st.just("delete"), st.integers(0, TASKS - 1), st.just({})),
    st.tuples(st.just("comment"), st.integers(0, TASKS - 1), st.just({})),
    st.tuples(st.just("board_create"), st.integers(0, BOARDS - 1),
              st.fixed_dictionaries({"name": _text, "description": _maybe_text})),
    st.tuples(st.just("board_update"), st.integers(0, BOARDS - 1),
              st.fixed_dictionaries({}, optional={"name": _text, "description": _maybe_text})),
    st.tuples(st.just("board_delete"), st.integers(0, BOARDS - 1), st.just({})),
    # What the view does not know (another type, or data that does not decode) on its streams.
    st.tuples(st.sampled_from(["other", "board_other"]), st.integers(0, TASKS - 1),
              st.sampled_from([
                  {"type": "task_noted", "data": b'{"note":1}'},
                  {"type": "task_updated", "data": b'{"type":"task_updated","status":"x"}'},
                  {"type": "board_updated", "data": b'{"name":7}'}])),
)


@dataclass
class Log:
    """Turns generated operations into committed events of one tenant."""

    tenant_id: str = field(default_factory=lambda: f"ten_{uuid.uuid4().hex[:12]}")
    task_ids: list[str] = field(default_factory=lambda: [new_id("tsk") for _ in range(TASKS)])
    board_ids: list[str] = field(default_factory=lambda: [new_id("brd") for _ in range(BOARDS)])
    events: list[Committed] = field(default_factory=list)
    streams: dict[str, list[Event]] = field(default_factory=dict)

    def add(self, op: tuple[str, int, dict[str, Any]]) -> None:
        kind, index, fields = op
        is_board = kind.startswith("board_")
        ids = self.board_ids if is_board else self.task_ids
        stream_id = ids[index % len(ids)]
        created = stream_id in self.streams
        if created == kind.endswith("create"):  # create once, and nothing before it
            return
        stream_type = "board" if is_board else "task"
        if kind.endswith("other"):
            self._append(stream_id, stream_type, fields["type"], fields["data"])
            return
        data = self._data(kind, fields)
        tag = type(data).__struct_config__.tag
        assert isinstance(tag, str)
        self._append(stream_id, stream_type, tag, encode(data))

    def _data(self, kind: str, fields: dict[str, Any]) -> EventData:
        fields = dict(fields)
        if "board" in fields:
            fields["board_id"] = self.board_ids[fields.pop("board")]
        if "dependencies" in fields:
            fields["dependencies"] = [self.task_ids[i] for i in fields["dependencies"]]
        match kind:
            case "create":
                return TaskCreated(**fields)
            case "update":
                return TaskUpdated(**fields)
            case "delete":
                return TaskDeleted()
            case "comment":
                return TaskCommented(comment_id=new_id("cmt"), body="hi")
            case "board_create":
                return BoardCreated(**fields)
            case "board_update":
                return BoardUpdated(**fields)
        return BoardDeleted()

    def _append(self, stream_id: str, stream_type: str, type_: str, data: bytes) -> None:
        stream = self.streams.setdefault(stream_id, [])
        position = len(self.events) + 1
        event = Event(
            id=uuid.uuid4(), stream_id=stream_id, stream_type=stream_type, seq=len(stream) + 1,
            position=position, type=type_, data=msgspec.Raw(data),
            meta=msgspec.Raw(b"{}"),
            created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=position),
        )
        stream.append(event)
        self.events.append((self.tenant_id, event))


def expected_view(log: Log) -> tuple[dict[str, tuple[Any, int]], set[tuple[str, str]]]:
    """The view from scratch: each task folded alone, then the counts from the folded tasks."""
    tasks = {task_id: fold_task(events) for task_id, events in log.streams.items()
             if task_id.startswith("tsk_")}
    live = {task_id: task for task_id, task in tasks.items() if task is not None}
    rows = {task_id: (task, len({d for d in task.dependencies
                                 if d in live and live[d].status != "done"}))
            for task_id, task in live.items()}
    edges = {(task_id, dep) for task_id, task in live.items() for dep in task.dependencies}
    return rows, edges


async def actual_view(conn: Any, tenant_id: str) -> tuple[dict[str, tuple[Any, int]],
                                                           set[tuple[str, str]]]:
    rows = await conn.fetch(f"SELECT {TASK_COLUMNS}, open_dependencies FROM tasks"
                            " WHERE tenant_id = $1", tenant_id)
    edges = await conn.fetch(
        "SELECT d.task_id, d.depends_on FROM task_dependencies d JOIN tasks t USING (task_id)"
        " WHERE t.tenant_id = $1", tenant_id)
    return ({row[0]: (task_of(row), row[13]) for row in rows},
            {(row[0], row[1]) for row in edges})


@VIEW_SETTINGS
@given(creates=st.lists(st.fixed_dictionaries(_task_fields), min_size=1, max_size=TASKS),
       ops=st.lists(_ops, min_size=1, max_size=60), cuts=st.sets(st.integers(1, 80), max_size=8))
async def test_the_view_equals_a_fold_from_scratch(
    pool: asyncpg.Pool, creates: list[dict[str, Any]], ops: list[tuple[str, int, dict[str, Any]]],
    cuts: set[int],
) -> None:
    log = Log()
    for index in range(BOARDS):
        log.add(("board_create", index, {"name": "b", "description": None}))
    for index, fields in enumerate(creates):  # a task may depend on one created after it
        log.add(("create", index, fields))
    for op in ops:
        log.add(op)
    async with pool.acquire() as conn:
        await apply_in_slices(conn, TasksProjection(), log.events, cuts)
        assert await actual_view(conn, log.tenant_id) == expected_view(log)
        boards = {row[0]: row for row in await conn.fetch(
            f"SELECT {BOARD_COLUMNS}, deleted_at FROM boards WHERE tenant_id = $1",
            log.tenant_id)}
    folded = {board_id: boards_module.fold(events) for board_id, events in log.streams.items()
              if board_id.startswith("brd_")}
    assert boards.keys() == folded.keys()
    for board_id, board in folded.items():
        row = boards[board_id]
        assert (row[6] is not None) == (board is None)  # deleted
        if board is not None:
            assert board_of(row) == board


# --- the reactor ---------------------------------------------------------------------------------


async def _blocked_pair(engine: Engine, tenant_id: str) -> tuple[str, str]:
    board, _ = await engine.boards.create(tenant_id, BoardIn(name="b"))
    first, _ = await engine.tasks.create(tenant_id, TaskIn(board_id=board.id, title="first"))
    then, _ = await engine.tasks.create(tenant_id, TaskIn(board_id=board.id, title="then",
                                                          dependencies=[first.id]))
    assert then.status == "blocked"
    return first.id, then.id


async def test_an_unblocking_left_undone_by_a_dead_process_is_done_by_the_next(
    settings: Settings, pool: asyncpg.Pool,
) -> None:
    tenant_id = "ten_crash"
    async with Engine(settings) as dying:
        await dying.tasks.reactor.stop()  # it dies before it can react to what follows
        first, then = await _blocked_pair(dying, tenant_id)
        await dying.tasks.update(tenant_id, first, TaskPatch(status="done"))
        await wait_for_view(pool, await dying.store.head(), 5)
        await asyncio.sleep(0.2)
        assert (await dying.tasks.get(tenant_id, then)).status == "blocked"
    async with Engine(settings) as next_one:
        async with asyncio.timeout(30):
            while True:
                if (await next_one.tasks.get(tenant_id, then)).status == "inbox":
                    break
                await asyncio.sleep(0.02)
        events = await next_one.store.read_whole_stream(then, tenant_id=tenant_id)
        assert [e.type for e in events] == ["task_created", "task_updated"]


async def test_two_reactors_deciding_the_same_change_write_it_once(
    engine: Engine, pool: asyncpg.Pool,
) -> None:
    tenant_id = "ten_twice"
    await engine.tasks.reactor.stop()
    first, then = await _blocked_pair(engine, tenant_id)
    await engine.tasks.update(tenant_id, first, TaskPatch(status="done"))
    await wait_for_view(pool, await engine.store.head(), 5)
    reactors = [TaskReactor(pool, engine.store, TasksProjection()) for _ in range(3)]
    await asyncio.gather(*(reactor.react() for reactor in reactors))
    await asyncio.gather(*(reactor.react() for reactor in reactors))  # on a stale view
    events = await engine.store.read_whole_stream(then, tenant_id=tenant_id)
    assert [e.type for e in events] == ["task_created", "task_updated"]
    assert (await engine.tasks.get(tenant_id, then)).status == "inbox"
