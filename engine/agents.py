"""Agents: an ``agent`` stream whose id is the agent id. ``agent_created`` holds version 1 of
the config; every ``agent_updated`` holds the next version, whole, so any version is one event
(sessions pin the version they were created with); ``agent_archived`` ends the agent's use.

The config's shape is checked by msgspec when a request is decoded (422 naming the field); what
a type cannot say (unique tool names, a tool's JSON Schema, a script that calls a tool the agent
does not have) is checked here (400 naming the field).

Reads (``read``, ``list_agents``) also carry the agent's ``view`` from the ``agents`` projection
(engine/projections/agents.py): status, heartbeat, sessions and usage. Write responses carry
``view: null``: a view is not waited for on the write path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from msgspec import UNSET, UnsetType

from engine.db import connection
from engine.errors import Conflict, InvalidRequest, NotFound
from engine.events import (
    NUL_FREE,
    AgentArchived,
    AgentConfig,
    AgentCreated,
    AgentHeartbeat,
    AgentUpdated,
    Event,
    EventMeta,
    Limits,
    ModelConfig,
    NewEvent,
    ToolSpec,
    decode_data,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.pages import Page, check_cursor, check_limit, page_of
from engine.projections.agents import NAME as VIEW
from engine.projections.agents import AgentStatus, agent_status, wait_for_view
from engine.projections.runner import reached
from engine.store import EventStore
from engine.summaries import usd

SERVER_TOOLS = ("memory_read", "memory_write", "task_create", "task_update")
# What an agent's config and status are folded from (its stream also holds heartbeats and
# memory); schema.sql's events_agent_config index is on exactly these.
CONFIG_TYPES = frozenset({"agent_created", "agent_updated", "agent_archived"})
_TRIES = 8  # attempts to append a config change while heartbeats keep coming
_VIEW_WAIT_SECONDS = 2.0  # a read waits this long for the view to show the agent's own events


class AgentView(msgspec.Struct):
    """The agent at work, from the ``agents`` view. ``status`` is computed when read: busy while
    one of its sessions runs or waits on a client or a human, offline when its runtime sent
    heartbeats and the last is older than SPOOL_AGENT_OFFLINE_SECONDS, idle otherwise."""

    status: AgentStatus
    version: int
    archived: bool
    last_heartbeat_at: datetime | None
    active_sessions: int
    sessions: int
    turns: int
    tokens: int
    usd: float
    cost_nanos: int  # USD x 1e9, exact


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
    view: AgentView | None = None


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


class HeartbeatIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, NUL_FREE, msgspec.Meta(max_length=500)] | None = None


class Agents:
    def __init__(self, store: EventStore, pool: asyncpg.Pool | None = None, *,
                 offline_seconds: float = 60.0, catch_up_seconds: float = 5.0) -> None:
        self._store = store
        self._pool = pool  # for the view; None: reads carry no view
        self.offline_seconds = offline_seconds
        self.catch_up_seconds = catch_up_seconds

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

    async def read(self, tenant_id: str, agent_id: str, *,
                   min_position: int | None = None) -> Agent:
        """The agent with its view (what ``GET /v1/agents/{id}`` shows)."""
        events = await self._events(tenant_id, agent_id)
        [agent] = await self._with_views(tenant_id, [(fold(events), events[-1].position)],
                                         min_position)
        return agent

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

    async def list_agents(self, tenant_id: str, *, after: str | None, limit: int,
                          min_position: int | None = None) -> Page[Agent]:
        check_cursor(after, "agt")
        ids = await self._store.stream_ids(tenant_id, "agent", after=after or "",
                                           limit=check_limit(limit) + 1)
        folded = []
        for agent_id in ids:
            events = await self._events(tenant_id, agent_id)
            folded.append((fold(events), events[-1].position))
        agents = await self._with_views(tenant_id, folded, min_position)
        return page_of(agents, limit, lambda a: a.id)

    async def _with_views(self, tenant_id: str, folded: list[tuple[Agent, int]],
                          min_position: int | None) -> list[Agent]:
        """The agents with their views, once the view has applied at least ``min_position``
        (503 if it does not within ``catch_up_seconds``) and, if it gets there within 2 s, the
        agents' own last events (so a view's version is the config's)."""
        if self._pool is None or not folded:
            return [agent for agent, _ in folded]
        await wait_for_view(self._pool, min_position, self.catch_up_seconds)
        await reached(self._pool, VIEW, max(position for _, position in folded),
                      _VIEW_WAIT_SECONDS)
        views = await self._views(tenant_id, [agent.id for agent, _ in folded])
        return [msgspec.structs.replace(agent, view=views.get(agent.id)) for agent, _ in folded]

    async def _views(self, tenant_id: str, agent_ids: list[str]) -> dict[str, AgentView]:
        assert self._pool is not None
        async with connection(self._pool, "reading the agents view") as conn:
            rows = await conn.fetch(
                "SELECT agent_id, version, archived, last_heartbeat_at, sessions,"
                " active_sessions, turns, tokens, cost_nanos, now() FROM agents"
                " WHERE tenant_id = $1 AND agent_id = ANY($2)", tenant_id, agent_ids)
        return {row[0]: self._view(row) for row in rows}

    def _view(self, row: Any) -> AgentView:
        status = agent_status(row[5], row[3], row[9], self.offline_seconds)
        return AgentView(status=status, version=row[1], archived=row[2],
                         last_heartbeat_at=row[3], active_sessions=row[5], sessions=row[4],
                         turns=row[6], tokens=row[7], usd=usd(row[8]), cost_nanos=row[8])

    async def heartbeat(
        self, tenant_id: str, agent_id: str, token_id: str, note: str | None, *,
        meta: EventMeta | None = None,
    ) -> Event:
        """Record that the agent's runtime is alive: ``agent_heartbeat`` on its stream (every
        heartbeat is appended). An archived agent is a Conflict, decided on its config events
        (a read of a few rows however many heartbeats it has sent, never a wait on a view)."""
        if (await self.get(tenant_id, agent_id)).status == "archived":
            raise Conflict(f"agent {agent_id!r} is archived")
        [event] = await self._store.append(
            agent_id, [new_event(AgentHeartbeat(token_id=token_id, note=note), meta=meta)],
            tenant_id=tenant_id, stream_type="agent",
        )
        return event

    async def update(
        self, tenant_id: str, agent_id: str, patch: AgentPatch, *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> tuple[Agent, Event]:
        event_id = derived_event_id(tenant_id, f"agents.{agent_id}.update", idempotency_key)

        def decide(events: list[Event]) -> NewEvent:
            if fold(events).status == "archived":
                raise Conflict(f"agent {agent_id!r} is archived")
            current = _versions(events)[-1]
            config = _patched(current.config, patch)
            check_config(config)
            data = AgentUpdated(version=current.version + 1, config=config)
            return new_event(data, id=event_id, meta=meta)

        _, event = await self._change(tenant_id, agent_id, decide)
        assert event is not None
        return await self.get(tenant_id, agent_id), event

    async def archive(
        self, tenant_id: str, agent_id: str, *, meta: EventMeta | None = None
    ) -> tuple[Agent, Event | None]:
        """Archive the agent (idempotent: an archived agent is returned as it is)."""

        def decide(events: list[Event]) -> NewEvent | None:
            if fold(events).status == "archived":
                return None
            return new_event(AgentArchived(), meta=meta)

        events, event = await self._change(tenant_id, agent_id, decide)
        if event is None:
            return fold(events), None
        return await self.get(tenant_id, agent_id), event

    async def _change(
        self, tenant_id: str, agent_id: str,
        decide: Callable[[list[Event]], NewEvent | None],
    ) -> tuple[list[Event], Event | None]:
        """Append what ``decide`` makes of the agent's config events (None: nothing), fenced
        on the stream: if anything was appended meanwhile, look again. Heartbeats and memory
        only make it try again; another config change (a concurrent PATCH that became the
        same version) is a 409."""
        for _ in range(_TRIES):
            events = await self._events(tenant_id, agent_id)
            new = decide(events)
            if new is None:
                return events, None
            seq = await self._store.stream_version(agent_id, tenant_id=tenant_id)
            try:
                [event] = await self._store.append(agent_id, [new], tenant_id=tenant_id,
                                                   stream_type="agent", expected_seq=seq)
            except Conflict:
                if (await self._events(tenant_id, agent_id))[-1].seq != events[-1].seq:
                    raise Conflict(f"agent {agent_id!r} was changed meanwhile; read it and "
                                   "try again") from None
                continue
            return events, event
        raise Conflict(f"agent {agent_id!r} is too busy to change now; try again")

    async def _events(self, tenant_id: str, agent_id: str) -> list[Event]:
        """The agent's config events (created, updated, archived): what its config and status
        are folded from, read without its heartbeats and memory."""
        if not is_id(agent_id, "agt"):
            raise NotFound(f"agent {agent_id!r} not found")
        try:
            events = await self._store.read_stream_types(agent_id, CONFIG_TYPES,
                                                         tenant_id=tenant_id)
        except NotFound:
            raise NotFound(f"agent {agent_id!r} not found") from None
        if not events:
            raise NotFound(f"stream {agent_id!r} is not an agent")
        return events


def fold(events: list[Event]) -> Agent:
    """The agent after ``events`` (its config events, in seq order)."""
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
