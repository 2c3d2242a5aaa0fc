"""Agents: an ``agent`` stream whose id is the agent id. ``agent_created`` holds version 1 of
the config; every ``agent_updated`` holds the next version, whole, so any version is one event
(sessions pin the version they were created with); ``agent_archived`` ends the agent's use.

The config's shape is checked by msgspec when a request is decoded (422 naming the field); what
a type cannot say (unique tool names, a tool's JSON Schema, a script that calls a tool the agent
does not have) is checked here (400 naming the field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from msgspec import UNSET, UnsetType

from engine.errors import Conflict, InvalidRequest, NotFound
from engine.events import (
    NUL_FREE,
    AgentArchived,
    AgentConfig,
    AgentCreated,
    AgentUpdated,
    Event,
    EventMeta,
    Limits,
    ModelConfig,
    ToolSpec,
    decode_data,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.pages import Page, check_limit, page_of
from engine.store import EventStore

SERVER_TOOLS = ("memory_read", "memory_write", "task_create", "task_update")


class Agent(msgspec.Struct):
    """An agent as the API shows it: its current version's config, flattened."""

    id: str
    version: int
    status: Literal["active", "archived"]
    name: str
    model: ModelConfig
    system: str | None
    tools: list[ToolSpec]
    limits: Limits
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


class AgentVersion(msgspec.Struct):
    version: int
    config: AgentConfig
    created_at: datetime


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True):
    """A PATCH body: each field given replaces the current one (``system: null`` clears it)."""

    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    model: ModelConfig | UnsetType = UNSET
    system: Annotated[str, NUL_FREE] | UnsetType | None = UNSET
    tools: Annotated[list[ToolSpec], msgspec.Meta(max_length=128)] | UnsetType = UNSET
    limits: Limits | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET


class Agents:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def create(
        self, tenant_id: str, config: AgentConfig, *, meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Agent, Event]:
        check_config(config)
        event_id = derived_event_id(tenant_id, "agents.create", idempotency_key)
        [event] = await self._store.append(
            new_id("agt"), [new_event(AgentCreated(config=config), id=event_id, meta=meta)],
            tenant_id=tenant_id, stream_type="agent", expected_seq=0,
        )
        return await self.get(tenant_id, event.stream_id), event

    async def get(self, tenant_id: str, agent_id: str) -> Agent:
        return fold(await self._events(tenant_id, agent_id))

    async def version(
        self, tenant_id: str, agent_id: str, version: int | None, *, archived_too: bool = False
    ) -> AgentVersion:
        """A version of the agent's config (the current one if None). An archived agent is a
        Conflict (no new session may use it) unless ``archived_too`` (sessions that already
        pinned it keep running)."""
        events = await self._events(tenant_id, agent_id)
        agent = fold(events)
        if agent.status == "archived" and not archived_too:
            raise Conflict(f"agent {agent_id!r} is archived")
        versions = _versions(events)
        if version is None:
            return versions[-1]
        if not 1 <= version <= len(versions):
            raise InvalidRequest(f"agent {agent_id!r} has no version {version}",
                                 field="agent_version")
        return versions[version - 1]

    async def versions(
        self, tenant_id: str, agent_id: str, *, after: int, limit: int
    ) -> Page[AgentVersion]:
        check_limit(limit)
        versions = [v for v in _versions(await self._events(tenant_id, agent_id))
                    if v.version > after]
        return page_of(versions[: limit + 1], limit, lambda v: str(v.version))

    async def list_agents(self, tenant_id: str, *, after: str | None, limit: int) -> Page[Agent]:
        if after is not None and not is_id(after, "agt"):
            raise InvalidRequest("after must be an agt_ id from a previous page", field="after")
        ids = await self._store.stream_ids(tenant_id, "agent", after=after or "",
                                           limit=check_limit(limit) + 1)
        agents = [await self.get(tenant_id, agent_id) for agent_id in ids]
        return page_of(agents, limit, lambda a: a.id)

    async def update(
        self, tenant_id: str, agent_id: str, patch: AgentPatch, *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> tuple[Agent, Event]:
        events = await self._events(tenant_id, agent_id)
        if fold(events).status == "archived":
            raise Conflict(f"agent {agent_id!r} is archived")
        current = _versions(events)[-1]
        config = _patched(current.config, patch)
        check_config(config)
        data = AgentUpdated(version=current.version + 1, config=config)
        # expected_seq: two concurrent updates cannot both become version n+1.
        [event] = await self._store.append(
            agent_id, [new_event(data, id=derived_event_id(tenant_id, f"agents.{agent_id}.update",
                                                   idempotency_key), meta=meta)],
            tenant_id=tenant_id, stream_type="agent", expected_seq=events[-1].seq,
        )
        return await self.get(tenant_id, agent_id), event

    async def archive(
        self, tenant_id: str, agent_id: str, *, meta: EventMeta | None = None
    ) -> tuple[Agent, Event | None]:
        """Archive the agent (idempotent: an archived agent is returned as it is)."""
        events = await self._events(tenant_id, agent_id)
        if fold(events).status == "archived":
            return fold(events), None
        [event] = await self._store.append(
            agent_id, [new_event(AgentArchived(), meta=meta)], tenant_id=tenant_id,
            stream_type="agent", expected_seq=events[-1].seq,
        )
        return await self.get(tenant_id, agent_id), event

    async def _events(self, tenant_id: str, agent_id: str) -> list[Event]:
        if not is_id(agent_id, "agt"):
            raise NotFound(f"agent {agent_id!r} not found")
        try:
            return await self._store.read_whole_stream(agent_id, tenant_id=tenant_id)
        except NotFound:
            raise NotFound(f"agent {agent_id!r} not found") from None


def fold(events: list[Event]) -> Agent:
    """The agent after ``events`` (its stream, from seq 1)."""
    versions = _versions(events)
    archived = any(event.type == AgentArchived.__struct_config__.tag for event in events)
    config = versions[-1].config
    return Agent(
        id=events[0].stream_id, version=versions[-1].version,
        status="archived" if archived else "active", name=config.name, model=config.model,
        system=config.system, tools=list(config.tools), limits=config.limits,
        metadata=config.metadata, created_at=events[0].created_at,
        updated_at=events[-1].created_at,
    )


def _versions(events: list[Event]) -> list[AgentVersion]:
    versions: list[AgentVersion] = []
    for event in events:
        data = decode_data(event)
        if isinstance(data, AgentCreated | AgentUpdated):
            versions.append(AgentVersion(len(versions) + 1, data.config, event.created_at))
    if not versions:
        raise NotFound(f"stream {events[0].stream_id!r} is not an agent")
    return versions


def _patched(config: AgentConfig, patch: AgentPatch) -> AgentConfig:
    changes = {field: value for field in patch.__struct_fields__
               if (value := getattr(patch, field)) is not UNSET}
    return msgspec.structs.replace(config, **changes)


def check_config(config: AgentConfig) -> None:
    """What the config's types cannot say; each error names the field."""
    names = [tool.name for tool in config.tools]
    for i, tool in enumerate(config.tools):
        field = f"tools[{i}]"
        if tool.name in names[:i]:
            raise InvalidRequest(f"tool name {tool.name!r} is used twice", field=f"{field}.name")
        if tool.executor == "server" and tool.name not in SERVER_TOOLS:
            raise InvalidRequest(
                f"{tool.name!r} is not a server tool; server tools are {', '.join(SERVER_TOOLS)}"
                " (other tools run on the client: executor 'client')", field=f"{field}.executor")
        try:
            Draft202012Validator.check_schema(tool.input_schema)
        except SchemaError as exc:
            raise InvalidRequest(f"not a valid JSON Schema: {exc.message}",
                                 field=f"{field}.input_schema") from exc
        if tool.input_schema.get("type", "object") != "object":
            raise InvalidRequest("a tool's input must be an object (type: object)",
                                 field=f"{field}.input_schema.type")
    _check_script(config, set(names))


def _check_script(config: AgentConfig, tools: set[str]) -> None:
    model = config.model
    if model.script is None:
        return
    if model.adapter != "scripted":
        raise InvalidRequest("only the scripted adapter takes a script", field="model.script")
    for i, step in enumerate(model.script):
        for j, call in enumerate(step.tool_calls):
            if call.name not in tools:
                raise InvalidRequest(f"the agent has no tool named {call.name!r}",
                                     field=f"model.script[{i}].tool_calls[{j}].name")
