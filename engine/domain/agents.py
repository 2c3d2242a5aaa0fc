"""Agents: an ``agent`` stream whose id is the agent id. ``agent_created`` holds version 1 of
the config; every ``agent_updated`` holds the next version, whole, so any version is one event
(sessions pin the version they were created with); ``agent_archived`` ends the agent's use.

The config's shape is checked by msgspec when a request is decoded (InvalidRequest naming the
field); what a type cannot say (unique tool names, a tool's JSON Schema, a script that calls a
tool the agent does not have) is checked here (InvalidRequest naming the field). A PATCH body is
AgentConfig's own fields made optional, and the patched config is checked whole by the same rules
before it is appended.

A read takes the config events' headers (no data) and the one version it needs, never every
version. A version whose stored event cannot be read as a config does not fail the read: the
version is ``broken`` (with why), and so is the agent while it is the current one.

Reads (``read``, ``list_agents``) also carry the agent's ``view`` from the ``agents`` projection
(engine/projections/agents.py): status, heartbeat, sessions and usage. Write responses carry
``view: null``: a view is not waited for on the write path.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from msgspec import UNSET, UnsetType

from engine.errors import Conflict, InvalidRequest, NotFound, StreamMoved
from engine.events import (
    MAX_STEP_DELAY,
    MAX_WORD_DELAY,
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
    ScriptStep,
    ToolSpec,
    decode_data,
    encode,
    new_event,
    words_of,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.infra.db import connection
from engine.log.store import EventStore
from engine.logging import get_logger
from engine.pages import Page, check_cursor, check_limit, page_of
from engine.prices import usd
from engine.projections.agents import NAME as VIEW
from engine.projections.agents import AgentStatus, agent_status, wait_for_view
from engine.projections.runner import reached

SERVER_TOOLS = ("memory_read", "memory_write", "task_create", "task_update")
# What an agent's config and status are folded from (its stream also holds heartbeats and
# memory); schema.sql's events_agent_config index is on exactly these.
CONFIG_TYPES = frozenset({"agent_created", "agent_updated", "agent_archived"})
VERSION_TYPES = frozenset({"agent_created", "agent_updated"})  # version n: the n-th of these
_TRIES = 8  # attempts to append a config change while heartbeats keep coming
_VIEW_WAIT_SECONDS = 2.0  # a read waits this long for the view to show the agent's own events
_config_decoder = msgspec.json.Decoder(AgentConfig)
_log = get_logger("agents")


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
    # Why the current version cannot be read (null: it can); the config fields shown are then
    # the last readable version's. A PATCH replacing the unreadable field repairs it.
    broken: str | None = None
    view: AgentView | None = None


class AgentVersion(msgspec.Struct):
    """A version of the agent's config; ``config`` is null (and ``broken`` says why) when its
    stored event cannot be read as a config."""

    version: int
    config: AgentConfig | None
    created_at: datetime
    broken: str | None = None


class PinnedVersion(msgspec.Struct, frozen=True):
    """A readable version, as a session pins it and a worker runs it."""

    version: int
    config: AgentConfig


class AgentBroken(Conflict):
    """The version asked for is stored but cannot be read as a config (written by an older or
    faulty build): no session may start on it, and its sessions' turns end ``failed``."""


# A PATCH body: AgentConfig's own fields, each optional (one definition of what a config field
# takes; ``system: null`` clears it). Each field given replaces the current one.
AgentPatch = msgspec.defstruct(
    "AgentPatch",
    [(f.name, f.type | UnsetType, UNSET) for f in msgspec.structs.fields(AgentConfig)],
    forbid_unknown_fields=True, module=__name__,
    namespace={"__doc__": "A PATCH body: each field given replaces the current one "
               "(``system: null`` clears it); each takes what it takes in a new agent."},
)


class HeartbeatIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, NUL_FREE, msgspec.Meta(max_length=500)] | None = None


class Agents:
    def __init__(self, store: EventStore, pool: asyncpg.Pool | None = None, *,
                 offline_seconds: float = 60.0, catch_up_seconds: float = 5.0) -> None:
        self._store = store
        self._pool = pool  # for the view; None: reads carry no view
        self.offline_seconds = offline_seconds
        self.catch_up_seconds = catch_up_seconds
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

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
        return (await self._current(tenant_id, agent_id)).agent

    async def read(self, tenant_id: str, agent_id: str, *,
                   min_position: int | None = None) -> Agent:
        """The agent with its view (what ``GET /v1/agents/{id}`` shows)."""
        current = await self._current(tenant_id, agent_id)
        [agent] = await self._with_views(
            tenant_id, [(current.agent, current.heads[-1].position)], min_position)
        return agent

    async def version(
        self, tenant_id: str, agent_id: str, version: int | None, *, archived_too: bool = False
    ) -> PinnedVersion:
        """A version of the agent's config (the current one if None), read alone. An archived
        agent is a Conflict (no new session may use it) unless ``archived_too`` (sessions that
        already pinned it keep running); a version that cannot be read is AgentBroken."""
        heads = await self._heads(tenant_id, agent_id)
        if _archived(heads) and not archived_too:
            raise Conflict(f"agent {agent_id!r} is archived")
        versions = _version_heads(heads)
        number = len(versions) if version is None else version
        if not 1 <= number <= len(versions):
            raise InvalidRequest(f"agent {agent_id!r} has no version {version}",
                                 field="agent_version")
        [event] = await self._load(tenant_id, [versions[number - 1]])
        found = _version_of(event, number)
        if found.config is None:
            raise AgentBroken(f"agent {agent_id!r}: {found.broken}; PATCH the agent to make "
                              "a readable version")
        return PinnedVersion(number, found.config)

    async def versions(
        self, tenant_id: str, agent_id: str, *, after: int, limit: int
    ) -> Page[AgentVersion]:
        check_limit(limit)
        heads = _version_heads(await self._heads(tenant_id, agent_id))
        start = max(after, 0)
        events = await self._load(tenant_id, heads[start: start + limit])
        versions = [_version_of(event, number) for number, event in enumerate(events, start + 1)]
        more = len(heads) > start + limit  # known from the headers: no extra version is read
        return Page(data=versions, has_more=more, next_cursor=str(start + limit) if more else None)

    async def list_agents(self, tenant_id: str, *, after: str | None, limit: int,
                          min_position: int | None = None) -> Page[Agent]:
        check_cursor(after, "agt")
        ids = await self._store.stream_ids(tenant_id, "agent", after=after or "",
                                           limit=check_limit(limit) + 1)
        currents = await self._currents(tenant_id, ids)
        folded = [(currents[agent_id].agent, currents[agent_id].heads[-1].position)
                  for agent_id in ids if agent_id in currents]
        agents = await self._with_views(tenant_id, folded, min_position)
        return page_of(agents, limit, lambda a: a.id)

    async def _with_views(self, tenant_id: str, folded: list[tuple[Agent, int]],
                          min_position: int | None) -> list[Agent]:
        """The agents with their views, once the view has applied at least ``min_position``
        (Unavailable if it does not within ``catch_up_seconds``) and, if it gets there within
        2 s, the agents' own last events (so a view's version is the config's)."""
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
        heartbeat is appended). An archived agent is a Conflict, decided on its config events'
        headers (a read of a few rows however many heartbeats it has sent, no config read and
        never a wait on a view)."""
        if _archived(await self._heads(tenant_id, agent_id)):
            raise Conflict(f"agent {agent_id!r} is archived")
        async with self._turn(agent_id):
            [event] = await self._store.append(
                agent_id, [new_event(AgentHeartbeat(token_id=token_id, note=note), meta=meta)],
                tenant_id=tenant_id, stream_type="agent",
            )
        return event

    async def update(
        self, tenant_id: str, agent_id: str, patch: msgspec.Struct, *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> tuple[Agent, Event]:
        """A new version: the current one's stored config with ``patch`` (an AgentPatch) over
        it, checked whole as a new agent's config is before anything is appended. So a PATCH
        that replaces a field a broken version cannot read makes a readable version again."""
        event_id = derived_event_id(tenant_id, f"agents.{agent_id}.update", idempotency_key)

        def decide(current: _Current) -> NewEvent:
            if current.agent.status == "archived":
                raise Conflict(f"agent {agent_id!r} is archived")
            config = _patched(current, patch)
            data = AgentUpdated(version=current.agent.version + 1, config=config)
            return new_event(data, id=event_id, meta=meta)

        _, event = await self._change(tenant_id, agent_id, decide)
        assert event is not None
        return await self.get(tenant_id, agent_id), event

    async def archive(
        self, tenant_id: str, agent_id: str, *, meta: EventMeta | None = None
    ) -> tuple[Agent, Event | None]:
        """Archive the agent (idempotent: an archived agent is returned as it is)."""

        def decide(current: _Current) -> NewEvent | None:
            if current.agent.status == "archived":
                return None
            return new_event(AgentArchived(), meta=meta)

        current, event = await self._change(tenant_id, agent_id, decide)
        if event is None:
            return current.agent, None
        return await self.get(tenant_id, agent_id), event

    async def _change(
        self, tenant_id: str, agent_id: str, decide: Callable[[_Current], NewEvent | None],
    ) -> tuple[_Current, Event | None]:
        """Append what ``decide`` makes of the agent as it is (None: nothing), fenced on the
        stream: if anything was appended meanwhile, look again. Heartbeats and memory only
        make it try again; another config change (a concurrent PATCH that became the same
        version) is a Conflict."""
        async with self._turn(agent_id):
            return await self._try_change(tenant_id, agent_id, decide)

    def _turn(self, agent_id: str) -> asyncio.Lock:
        """This process's heartbeats and config changes of one agent take turns, so a runtime
        beating back to back cannot win every try of a change (another process's heartbeats
        are why a change still retries)."""
        lock = self._turns.get(agent_id)
        if lock is None:
            lock = self._turns[agent_id] = asyncio.Lock()
        return lock

    async def _try_change(
        self, tenant_id: str, agent_id: str, decide: Callable[[_Current], NewEvent | None],
    ) -> tuple[_Current, Event | None]:
        for _ in range(_TRIES):
            current = await self._current(tenant_id, agent_id)
            new = decide(current)
            if new is None:
                return current, None
            seq = await self._store.stream_version(agent_id, tenant_id=tenant_id)
            try:
                [event] = await self._store.append(agent_id, [new], tenant_id=tenant_id,
                                                   stream_type="agent", expected_seq=seq)
            except StreamMoved:
                if (await self._heads(tenant_id, agent_id))[-1].seq != current.heads[-1].seq:
                    raise Conflict(f"agent {agent_id!r} was changed meanwhile; read it and "
                                   "try again") from None
                continue
            return current, event
        raise Conflict(f"agent {agent_id!r} is too busy to change now; try again")

    async def _current(self, tenant_id: str, agent_id: str) -> _Current:
        """The agent as its current version shows it (see ``_currents``)."""
        if not is_id(agent_id, "agt"):
            raise NotFound(f"agent {agent_id!r} not found")
        found = await self._currents(tenant_id, [agent_id])
        if agent_id not in found:
            raise NotFound(f"agent {agent_id!r} not found")
        return found[agent_id]

    async def _currents(self, tenant_id: str, agent_ids: list[str]) -> dict[str, _Current]:
        """The agents (those found) as their current versions show them, in two reads however
        many agents and versions: every config event's header, then each current version with
        its data. A current version that cannot be read leaves the agent ``broken``, shown
        with the last readable version's config."""
        heads: dict[str, list[Event]] = {}
        for head in await self._store.read_streams_types(agent_ids, CONFIG_TYPES,
                                                         tenant_id=tenant_id, data=False):
            heads.setdefault(head.stream_id, []).append(head)
        versions = {agent_id: found for agent_id, stream in heads.items()
                    if (found := [h for h in stream if h.type in VERSION_TYPES])}
        loaded = await self._load(tenant_id, [found[-1] for found in versions.values()])
        currents = {}
        for event in loaded:
            agent_id, count = event.stream_id, len(versions[event.stream_id])
            current = _version_of(event, count)
            config = current.config
            if config is None:
                config = await self._readable_before(tenant_id, agent_id,
                                                     versions[agent_id][:-1])
            agent = _agent(heads[agent_id], count, config, current.broken)
            currents[agent_id] = _Current(heads[agent_id], event, agent, config)
        return currents

    async def _readable_before(self, tenant_id: str, agent_id: str,
                               versions: list[Event]) -> AgentConfig:
        """The newest of these versions that can be read (only a broken agent asks)."""
        for number in range(len(versions), 0, -1):
            [event] = await self._load(tenant_id, [versions[number - 1]])
            if (config := _version_of(event, number).config) is not None:
                return config
        return _unreadable(agent_id)

    async def _heads(self, tenant_id: str, agent_id: str) -> list[Event]:
        """The agent's config events (created, updated, archived) without their data: what its
        status and versions are known from, read without its heartbeats and memory."""
        if not is_id(agent_id, "agt"):
            raise NotFound(f"agent {agent_id!r} not found")
        heads = await self._store.read_streams_types([agent_id], CONFIG_TYPES,
                                                     tenant_id=tenant_id, data=False)
        if not heads:  # unknown, another tenant's, or not an agent
            raise NotFound(f"agent {agent_id!r} not found")
        return heads

    async def _load(self, tenant_id: str, heads: list[Event]) -> list[Event]:
        """These config events with their data, in (agent, seq) order."""
        if not heads:
            return []
        return await self._store.read_events_at([(head.stream_id, head.seq) for head in heads],
                                                tenant_id=tenant_id)


@dataclass(frozen=True)
class _Current:
    heads: list[Event]  # the agent's config events, without data
    event: Event  # its current version's event, with data
    agent: Agent
    config: AgentConfig  # the config it shows (the last readable one if it is broken)


def fold(events: list[Event]) -> Agent:
    """The agent after ``events`` (its stream's events, with data, in seq order): what
    ``Agents`` reads of it, folded in memory."""
    heads = [event for event in events if event.type in CONFIG_TYPES]
    versions = [_version_of(event, n) for n, event in enumerate(_version_heads(heads), 1)]
    readable = [version.config for version in versions if version.config is not None]
    config = readable[-1] if readable else _unreadable(heads[0].stream_id)
    return _agent(heads, len(versions), config, versions[-1].broken)


def _unreadable(agent_id: str) -> AgentConfig:
    """What a broken agent shows when none of its versions can be read: a name to know it by."""
    return AgentConfig(name=agent_id)


def _version_heads(heads: list[Event]) -> list[Event]:
    """The events that are versions (created, updated), in order: version n is the n-th."""
    versions = [head for head in heads if head.type in VERSION_TYPES]
    if not versions:
        raise NotFound(f"stream {heads[0].stream_id!r} is not an agent")
    return versions


def _archived(heads: list[Event]) -> bool:
    return any(head.type == AgentArchived.__struct_config__.tag for head in heads)


def _version_of(event: Event, number: int) -> AgentVersion:
    """Version ``number`` from its stored event; one that cannot be read as a config (what an
    older or faulty build wrote) is kept, with why, rather than failing the read."""
    try:
        data = decode_data(event)
    except (msgspec.MsgspecError, RecursionError) as exc:  # RecursionError: nested too deep
        reason = str(exc)
    else:
        if isinstance(data, AgentCreated | AgentUpdated) and _tag(data) == event.type:
            return AgentVersion(number, data.config, event.created_at)
        reason = f"its data is a {type(data).__name__}, not a config"
    _log.warning("agents.unreadable_version", agent_id=event.stream_id, version=number,
                 seq=event.seq, error=reason)
    return AgentVersion(number, None, event.created_at,
                        broken=f"version {number} cannot be read: {reason}")


def _tag(data: msgspec.Struct) -> object:
    return type(data).__struct_config__.tag


def _agent(heads: list[Event], version: int, config: AgentConfig, broken: str | None) -> Agent:
    return Agent(
        id=heads[0].stream_id, version=version,
        status="archived" if _archived(heads) else "active", name=config.name,
        model=config.model, system=config.system, tools=list(config.tools),
        limits=config.limits, metadata=config.metadata, created_at=heads[0].created_at,
        updated_at=heads[-1].created_at, broken=broken,
    )


def _stored_config(event: Event) -> dict[str, Any] | None:
    """A version's config as stored JSON, whether or not it can be read as a config (None: not
    even as JSON, e.g. nested too deep, or no config object in it)."""
    try:
        data = msgspec.json.decode(event.data)
    except (msgspec.DecodeError, RecursionError):
        return None
    config = data.get("config") if isinstance(data, dict) else None
    return config if isinstance(config, dict) else None


def _patched(current: _Current, patch: msgspec.Struct) -> AgentConfig:
    """The patch over the current version as stored (so it keeps what a broken version
    changed), or over the config the agent shows when that is not even JSON."""
    base = _stored_config(current.event)
    if base is None:
        base = msgspec.to_builtins(current.config)
    changes = {field: msgspec.to_builtins(value) for field in patch.__struct_fields__
               if (value := getattr(patch, field)) is not UNSET}
    return validated({**base, **changes})


def validated(raw: dict[str, Any]) -> AgentConfig:
    """``raw`` as an AgentConfig, by the rules a new agent's config is held to (its type's,
    then ``check_config``'s); each error names the field."""
    try:
        config = _config_decoder.decode(encode(raw))
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at ")
        raise InvalidRequest(message, field=_field_of(path)) from exc
    check_config(config)
    return config


def _field_of(path: str) -> str:
    """msgspec's '`$.metadata[...]`' (or '`key` in `$.metadata`') as 'metadata[...]'."""
    field = path.strip("`").removeprefix("key` in `").removeprefix("$").lstrip(".")
    return field or "body"


def check_config(config: AgentConfig) -> None:
    """What the config's types cannot say, on create and on every PATCH (on the whole patched
    config); each error names the field. A new rule is one more function in ``_RULES``."""
    for rule in _RULES:
        rule(config)


def _check_tools(config: AgentConfig) -> None:
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


def _check_script(config: AgentConfig) -> None:
    tools = {tool.name for tool in config.tools}
    model = config.model
    if model.script is None:
        return
    if model.adapter != "scripted":
        raise InvalidRequest("only the scripted adapter takes a script", field="model.script")
    for i, step in enumerate(model.script):
        _check_delay(step, f"model.script[{i}].delay")
        for j, call in enumerate(step.tool_calls):
            if call.name not in tools:
                raise InvalidRequest(f"the agent has no tool named {call.name!r}",
                                     field=f"model.script[{i}].tool_calls[{j}].name")


def _check_delay(step: ScriptStep, field: str) -> None:
    """A slow scripted step holds a worker slot: bounded per word and in all."""
    if step.delay > MAX_WORD_DELAY:
        raise InvalidRequest(f"delay must be at most {MAX_WORD_DELAY:g} seconds per word",
                             field=field)
    if step.delay * len(words_of(step.text)) > MAX_STEP_DELAY:
        raise InvalidRequest(f"delay times the step's words must be at most {MAX_STEP_DELAY:g}"
                             " seconds", field=field)
_RULES: tuple[Callable[[AgentConfig], None], ...] = (_check_tools, _check_script)
