"""Server tools: the built-ins a worker runs itself, each with the agent's timeout.

``memory_write {key, value}`` and ``memory_read {key}``: the agent's memory, shared by all its
sessions, kept as ``memory_written`` events on the agent's stream (so it is in the log like
everything else). ``task_create`` and ``task_update`` arrive with boards and tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from engine.events import EventMeta, MemoryWritten, decode_data, new_event
from engine.store import EventStore

_KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00]*$"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "memory_read": {"type": "object", "properties": {"key": _KEY}, "required": ["key"],
                    "additionalProperties": False},
    "memory_write": {"type": "object", "properties": {
        "key": _KEY, "value": {"type": ["string", "null"], "maxLength": 100_000,
                               "pattern": "^[^\\x00]*$"}},
        "required": ["key", "value"], "additionalProperties": False},
}


@dataclass(frozen=True)
class ToolContext:
    tenant_id: str
    agent_id: str
    session_id: str
    actor: str


@dataclass(frozen=True)
class Outcome:
    text: str
    is_error: bool = False


class ServerTools:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._tools: dict[str, Callable[[ToolContext, dict[str, Any]], Awaitable[Outcome]]] = {
            "memory_read": self._memory_read,
            "memory_write": self._memory_write,
        }

    async def run(self, name: str, tool_input: dict[str, Any], context: ToolContext,
                  seconds: float) -> Outcome:
        tool = self._tools.get(name)
        if tool is None:
            return Outcome(f"no server tool named {name!r} on this server", is_error=True)
        error = best_match(Draft202012Validator(SCHEMAS[name]).iter_errors(tool_input))
        if error is not None:
            return Outcome(f"invalid input for {name!r}: {error.message}", is_error=True)
        try:
            async with asyncio.timeout(seconds):
                return await tool(context, tool_input)
        except TimeoutError:
            return Outcome(f"{name} timed out after {seconds:g} s", is_error=True)

    async def _memory_read(self, context: ToolContext, tool_input: dict[str, Any]) -> Outcome:
        value: str | None = None
        for event in await self._store.read_whole_stream(context.agent_id,
                                                         tenant_id=context.tenant_id):
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
