"""Server tools: the built-ins a worker runs itself, each with the agent's timeout.

``memory_write {key, value}`` and ``memory_read {key}``: the agent's memory, shared by all its
sessions, kept as ``memory_written`` events on the agent's stream (so it is in the log like
everything else). ``task_create {board_id, title, ...}`` and ``task_update {task_id, ...}`` go
through the engine's ``Tasks`` service (engine/domain/tasks.py, given to ``ServerTools``: its
dependency lock is the engine's), the code path of ``POST /v1/tasks`` and ``PATCH
/v1/tasks/{id}``, and answer with the task as JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from engine.domain.tasks import MAX_DEPENDENCIES, PRIORITIES, STATUSES, TaskIn, TaskPatch, Tasks
from engine.errors import SpoolError
from engine.events import EventMeta, MemoryWritten, decode_data, new_event
from engine.log.store import EventStore

T = TypeVar("T")

_KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00]*$"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "memory_read": {"type": "object", "properties": {"key": _KEY}, "required": ["key"],
                    "additionalProperties": False},
    "memory_write": {"type": "object", "properties": {
        "key": _KEY, "value": {"type": ["string", "null"], "maxLength": 100_000,
                               "pattern": "^[^\\x00]*$"}},
        "required": ["key", "value"], "additionalProperties": False},
}
_TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
_TASK_ID = {"type": "string", "pattern": "^tsk_[0-9A-HJKMNP-TV-Z]{26}$"}
_TASK_FIELDS: dict[str, Any] = {
    "board_id": {"type": "string", "pattern": "^brd_[0-9A-HJKMNP-TV-Z]{26}$",
                 "description": "the board the task is on"},
    "title": {**_TEXT, "minLength": 1, "maxLength": 500},
    "description": {"type": ["string", "null"], "maxLength": 20_000,
                    "pattern": "^[^\\x00]*$"},
    "status": {"enum": list(STATUSES), "description": "blocked by hand stays until changed;"
               " a task whose dependencies are not all done is blocked until they are"},
    "priority": {"enum": list(PRIORITIES)},
    "assignee_id": {"type": ["string", "null"], "description": "an agent id (agt_...)"},
    "due_at": {"type": ["string", "null"], "format": "date-time",
               "description": "RFC 3339 with an offset"},
    "dependencies": {"type": "array", "items": _TASK_ID, "maxItems": MAX_DEPENDENCIES,
                     "uniqueItems": True, "description": "ids of tasks that must be done first"},
}
SCHEMAS["task_create"] = {"type": "object", "properties": _TASK_FIELDS,
                          "required": ["board_id", "title"], "additionalProperties": False}
SCHEMAS["task_update"] = {"type": "object", "properties": {"task_id": _TASK_ID, **_TASK_FIELDS},
                          "required": ["task_id"], "additionalProperties": False}


@dataclass(frozen=True)
class ToolContext:
    tenant_id: str
    agent_id: str
    session_id: str
    actor: str
    # The call's id: with it a task tool run twice for one call (a worker that died before
    # recording the result) makes its change once.
    tool_use_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    text: str
    is_error: bool = False


_MEMORY_TYPES = frozenset({"memory_written"})  # schema.sql: events_memory


class ServerTools:
    def __init__(self, store: EventStore, tasks: Tasks) -> None:
        self._store = store
        self._tasks = tasks
        self._tools: dict[str, Callable[[ToolContext, dict[str, Any]], Awaitable[Outcome]]] = {
            "memory_read": self._memory_read,
            "memory_write": self._memory_write,
            "task_create": self._task_create,
            "task_update": self._task_update,
        }

    async def run(self, name: str, tool_input: dict[str, Any], context: ToolContext,
                  seconds: float) -> Outcome:
        tool = self._tools.get(name)
        if tool is None:
            return Outcome(f"no server tool named {name!r} on this server", is_error=True)
        error = best_match(Draft202012Validator(SCHEMAS[name]).iter_errors(tool_input))
        if error is not None:
            where = f" ({error.json_path.removeprefix('$.')})" if error.path else ""
            return Outcome(f"invalid input for {name!r}: {error.message}{where}", is_error=True)
        try:
            async with asyncio.timeout(seconds):
                return await tool(context, tool_input)
        except TimeoutError:
            return Outcome(f"{name} timed out after {seconds:g} s", is_error=True)

    async def _memory_read(self, context: ToolContext, tool_input: dict[str, Any]) -> Outcome:
        value: str | None = None
        for event in await self._store.read_stream_types(  # not the heartbeats
                context.agent_id, _MEMORY_TYPES, tenant_id=context.tenant_id):
            data = decode_data(event)
            if isinstance(data, MemoryWritten) and data.key == tool_input["key"]:
                value = data.value
        if value is None:
            return Outcome(f"(nothing stored under {tool_input['key']!r})")
        return Outcome(value)

    async def _memory_write(self, context: ToolContext, tool_input: dict[str, Any]) -> Outcome:
        data = MemoryWritten(key=tool_input["key"], value=tool_input["value"],
                             session_id=context.session_id)
        await self._store.append(context.agent_id,
                                 [new_event(data, meta=EventMeta(actor=context.actor))],
                                 tenant_id=context.tenant_id, stream_type="agent")
        return Outcome("stored" if tool_input["value"] is not None else "deleted")

    async def _task_create(self, context: ToolContext, tool_input: dict[str, Any]) -> Outcome:
        async def create() -> Any:
            body = _decode(tool_input, TaskIn)
            task, _ = await self._tasks.create(
                context.tenant_id, body, meta=EventMeta(actor=context.actor),
                idempotency_key=_once(context))
            return task

        return await _task_outcome(create)

    async def _task_update(self, context: ToolContext, tool_input: dict[str, Any]) -> Outcome:
        async def update() -> Any:
            fields = {name: value for name, value in tool_input.items() if name != "task_id"}
            task, _ = await self._tasks.update(
                context.tenant_id, tool_input["task_id"], _decode(fields, TaskPatch),
                meta=EventMeta(actor=context.actor), idempotency_key=_once(context))
            return task

        return await _task_outcome(update)


def _decode(value: dict[str, Any], body_type: type[T]) -> T:
    """``value`` decoded exactly as an HTTP body of that type would be."""
    return msgspec.json.decode(msgspec.json.encode(value), type=body_type)


def _once(context: ToolContext) -> str | None:
    if context.tool_use_id is None:
        return None
    return f"tool:{context.session_id}:{context.tool_use_id}"


async def _task_outcome(change: Callable[[], Awaitable[Any]]) -> Outcome:
    """The task as JSON, or the error the API would give, naming the field."""
    try:
        return Outcome(msgspec.json.encode(await change()).decode())
    except msgspec.ValidationError as exc:
        return Outcome(f"invalid input: {exc}", is_error=True)
    except SpoolError as exc:
        field = exc.details.get("field") if isinstance(exc.details, dict) else None
        where = f" ({field})" if field else ""
        return Outcome(f"{exc.type}: {exc.message}{where}", is_error=True)
