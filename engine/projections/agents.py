"""The ``agents`` projection: agents at work (the ``agents`` table) and one summary per session
(``session_summaries``), folded from the agent and session streams.

A session's status moves exactly as in ``engine/domain/session_state.py`` (the hypothesis test
in tests/engine/projections/test_agent_view.py holds the two folds to each other); the summary
keeps in ``fold`` only what that needs. An agent's totals (sessions, active sessions, turns,
tokens, cost) are kept by adding what each event changed in one of its sessions, so a page costs
one read and one write per table however many events it holds (most are model output:
``message_delta``).

Spend is attributed through the session's agent (the agent pinned at ``session_created``).
Whether an agent is busy, idle or offline depends on the clock; it is computed when read
(``agent_status``), never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

from engine.events import (
    SESSION_ARCHIVED,
    AgentArchived,
    AgentCreated,
    AgentHeartbeat,
    AgentUpdated,
    AnyEventData,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    MessageStart,
    MessageStop,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SessionStatus,
    SpendRecorded,
    ToolResult,
    ToolUse,
    TurnStarted,
    UserMessage,
    decoded,
)
from engine.log.store import Committed
from engine.logging import get_logger
from engine.projections.runner import require

log = get_logger("projections.agents")

NAME = "agents"
AgentStatus = Literal["busy", "idle", "offline"]
ACTIVE: frozenset[str] = frozenset({"running", "requires_action"})

# The session events that change a summary beyond its last position (the rest, message_delta
# above all, are not even decoded).
_SESSION_TYPES = frozenset({
    "session_created", "user_message", "turn_started", "message_start", "tool_use",
    "message_stop", "tool_result", "approval_requested", "approval_resolved", "session_done",
    SESSION_ARCHIVED, "spend_recorded"})
_AGENT_TYPES = frozenset({"agent_created", "agent_updated", "agent_archived", "agent_heartbeat"})


class StatusFold(msgspec.Struct, omit_defaults=True):
    """What a session's status depends on (state.py's SessionState, reduced to that)."""

    queue: list[str] = []  # turns submitted, not started
    current: str | None = None  # the running turn
    calls: dict[str, str] = {}  # its tool calls without a result: tool_use_id -> executor
    draft: list[str] = []  # tool calls of the open message (dropped if it is cut short)
    approvals: dict[str, str | None] = {}  # its tool_use_id -> decision (None: pending)
    archived: bool = False

    @property
    def status(self) -> SessionStatus:
        if self.archived:
            return "archived"
        if self.current is not None:
            return "requires_action" if self._waiting else "running"
        return "running" if self.queue else "idle"

    @property
    def _waiting(self) -> bool:
        """A client call offered to the client, or an approval a human has to decide."""
        offered = any(executor == "client" and self.approvals.get(call, "approve") == "approve"
                      for call, executor in self.calls.items())
        return offered or any(decision is None for decision in self.approvals.values())

    def apply(self, data: AnyEventData) -> None:
        match data:
            case UserMessage():
                self.queue.append(data.turn_id)
            case TurnStarted() if data.turn_id in self.queue:
                self.queue.remove(data.turn_id)
                self.current, self.calls, self.approvals = data.turn_id, {}, {}
            case MessageStart():
                self.draft = []
            case ToolUse():
                if self.current is not None:
                    self.calls[data.tool_use_id] = data.executor
                self.draft.append(data.tool_use_id)
            case MessageStop():
                if self.current is not None and data.stop_reason in ("error", "interrupted"):
                    for call in self.draft:  # a message cut short: its calls are not made
                        self.calls.pop(call, None)
                self.draft = []
            case ToolResult() if self.current is not None:
                self.calls.pop(data.tool_use_id, None)
            case ApprovalRequested() if self.current is not None:
                self.approvals[data.tool_use_id] = None
            case ApprovalResolved() if self.current is not None:
                if data.tool_use_id in self.approvals:
                    self.approvals[data.tool_use_id] = data.decision
            case SessionDone():
                if self.current == data.turn_id:
                    self.current, self.calls, self.approvals = None, {}, {}
                elif data.turn_id in self.queue:
                    self.queue = [turn for turn in self.queue if turn != data.turn_id]
            case SessionArchived():
                self.archived = True
            case _:
                pass


@dataclass
class Summary:
    """A ``session_summaries`` row."""

    session_id: str
    tenant_id: str
    agent_id: str | None
    agent_version: int | None
    title: str | None
    created_at: datetime
    updated_at: datetime
    last_position: int
    turns: int = 0
    tokens: int = 0
    cost_nanos: int = 0
    fold: StatusFold = field(default_factory=StatusFold)

    @property
    def status(self) -> SessionStatus:
        return self.fold.status

    def totals(self) -> tuple[int, int, int, int, int]:
        """What it adds to its agent's row: (sessions, active, turns, tokens, cost)."""
        return (1, int(self.status in ACTIVE), self.turns, self.tokens, self.cost_nanos)

    def apply(self, event: Event, data: AnyEventData | None) -> None:
        self.updated_at, self.last_position = event.created_at, event.position
        if isinstance(data, SessionDone):
            self.turns += 1
        elif isinstance(data, SpendRecorded):
            self.tokens += data.tokens
            self.cost_nanos += data.cost_nanos
        if data is not None and not (self.agent_id is None and isinstance(data, UserMessage)):
            self.fold.apply(data)  # without an agent a message is only recorded: no turn


@dataclass
class AgentRow:
    """An ``agents`` row."""

    agent_id: str
    tenant_id: str
    created_at: datetime
    version: int = 1
    archived: bool = False
    last_heartbeat_at: datetime | None = None
    sessions: int = 0
    active_sessions: int = 0
    turns: int = 0
    tokens: int = 0
    cost_nanos: int = 0

    def apply(self, event: Event, data: AnyEventData | None) -> None:
        # Versions are counted by type, as engine/domain/agents.py counts them: one whose data
        # cannot be read is still a version (the agent is broken at it, not a version behind).
        if event.type == AgentUpdated.__struct_config__.tag:
            self.version += 1
        elif isinstance(data, AgentArchived):
            self.archived = True
        elif isinstance(data, AgentHeartbeat):
            self.last_heartbeat_at = event.created_at

    def add(self, delta: Sequence[int]) -> None:
        self.sessions += delta[0]
        self.active_sessions += delta[1]
        self.turns += delta[2]
        self.tokens += delta[3]
        self.cost_nanos += delta[4]


def agent_status(active_sessions: int, last_heartbeat_at: datetime | None, now: datetime,
                 offline_after: float) -> AgentStatus:
    """busy while a session runs or waits; offline when the agent's runtime has sent
    heartbeats and the last is older than ``offline_after`` seconds; idle otherwise (an agent
    that never sent one has no runtime to lose)."""
    if active_sessions > 0:
        return "busy"
    if last_heartbeat_at is not None and now - last_heartbeat_at > timedelta(
            seconds=offline_after):
        return "offline"
    return "idle"


class AgentsProjection:
    name = NAME

    def touches(self, event: Event) -> bool:
        return event.stream_type in ("session", "agent")

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool:
        page = _Page(conn)
        await page.load_summaries({e.stream_id for _, e in events if e.stream_type == "session"})
        await page.load_agents({e.stream_id for _, e in events if e.stream_type == "agent"})
        for tenant_id, event in events:
            if event.stream_type == "session":
                await page.apply_session(tenant_id, event)
            elif event.stream_type == "agent":
                await page.apply_agent(tenant_id, event)
        return await page.write()


class _Page:
    """One page applied in memory over the rows it touches, then written back."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._summaries: dict[str, Summary] = {}
        self._agents: dict[str, AgentRow | None] = {}  # None: not in the view (yet)
        self._dirty_summaries: set[str] = set()
        self._dirty_agents: set[str] = set()

    async def load_summaries(self, session_ids: set[str]) -> None:
        if not session_ids:
            return
        rows = await self._conn.fetch(
            f"SELECT {SUMMARY_COLUMNS} FROM session_summaries WHERE session_id = ANY($1)",
            list(session_ids))
        self._summaries = {row[0]: _summary(row) for row in rows}

    async def load_agents(self, agent_ids: set[str]) -> None:
        """The agents of the page's agent events and of its known sessions, in one query (a
        session created in this page finds its agent by ``_agent``)."""
        agent_ids |= {s.agent_id for s in self._summaries.values() if s.agent_id is not None}
        if not agent_ids:
            return
        rows = await self._conn.fetch(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ANY($1)", list(agent_ids))
        self._agents = dict.fromkeys(agent_ids, None)
        self._agents.update({row[0]: _agent_row(row) for row in rows})

    async def apply_session(self, tenant_id: str, event: Event) -> None:
        summary = self._summaries.get(event.stream_id)
        if event.type not in _SESSION_TYPES:  # model output above all: moves no total
            if summary is not None:
                summary.updated_at, summary.last_position = event.created_at, event.position
                self._dirty_summaries.add(event.stream_id)
            return
        data = decoded(event, _SESSION_TYPES)
        if summary is None:
            if not isinstance(data, SessionCreated):
                return  # not a session the view knows: nothing to add to
            summary = Summary(event.stream_id, tenant_id, data.agent_id, data.agent_version,
                              data.title, event.created_at, event.created_at, event.position)
            self._summaries[event.stream_id] = summary
            before = (0, 0, 0, 0, 0)
        else:
            before = summary.totals()
            summary.apply(event, data)
        self._dirty_summaries.add(event.stream_id)
        delta = [after - was for after, was in zip(summary.totals(), before, strict=True)]
        if summary.agent_id is not None and any(delta):
            agent = await self._agent(summary.agent_id)
            if agent is not None and agent.tenant_id == tenant_id:
                agent.add(delta)
                self._dirty_agents.add(agent.agent_id)

    async def apply_agent(self, tenant_id: str, event: Event) -> None:
        data = decoded(event, _AGENT_TYPES)
        agent = await self._agent(event.stream_id)
        if agent is None:
            if event.type != AgentCreated.__struct_config__.tag:  # read or not: it is an agent
                return
            agent = AgentRow(event.stream_id, tenant_id, event.created_at)
            self._agents[event.stream_id] = agent
        else:
            agent.apply(event, data)
        self._dirty_agents.add(event.stream_id)

    async def _agent(self, agent_id: str) -> AgentRow | None:
        if agent_id not in self._agents:
            row = await self._conn.fetchrow(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = $1", agent_id)
            self._agents[agent_id] = None if row is None else _agent_row(row)
        return self._agents[agent_id]

    async def write(self) -> bool:
        summaries = [self._summaries[s] for s in sorted(self._dirty_summaries)]
        agents = [a for a in (self._agents[i] for i in sorted(self._dirty_agents)) if a]
        if summaries:
            await self._conn.executemany(_UPSERT_SUMMARY, [_summary_args(s) for s in summaries])
        if agents:
            await self._conn.executemany(_UPSERT_AGENT, [_agent_args(a) for a in agents])
        return bool(summaries or agents)



SUMMARY_COLUMNS = ("session_id, tenant_id, agent_id, agent_version, title, created_at,"
                   " updated_at, last_position, turns, tokens, cost_nanos, fold, status")
AGENT_COLUMNS = ("agent_id, tenant_id, created_at, version, archived, last_heartbeat_at,"
                 " sessions, active_sessions, turns, tokens, cost_nanos")
_fold_decoder = msgspec.json.Decoder(StatusFold)

_UPSERT_SUMMARY = (
    f"INSERT INTO session_summaries ({SUMMARY_COLUMNS})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13)"
    " ON CONFLICT (session_id) DO UPDATE SET updated_at = EXCLUDED.updated_at,"
    " last_position = EXCLUDED.last_position, turns = EXCLUDED.turns,"
    " tokens = EXCLUDED.tokens, cost_nanos = EXCLUDED.cost_nanos, fold = EXCLUDED.fold,"
    " status = EXCLUDED.status"
)
_UPSERT_AGENT = (
    f"INSERT INTO agents ({AGENT_COLUMNS})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    " ON CONFLICT (agent_id) DO UPDATE SET version = EXCLUDED.version,"
    " archived = EXCLUDED.archived, last_heartbeat_at = EXCLUDED.last_heartbeat_at,"
    " sessions = EXCLUDED.sessions, active_sessions = EXCLUDED.active_sessions,"
    " turns = EXCLUDED.turns, tokens = EXCLUDED.tokens, cost_nanos = EXCLUDED.cost_nanos"
)


def _summary(row: Any) -> Summary:
    return Summary(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                   row[9], row[10], _fold_decoder.decode(row[11]))


def _summary_args(s: Summary) -> tuple[Any, ...]:
    return (s.session_id, s.tenant_id, s.agent_id, s.agent_version, s.title, s.created_at,
            s.updated_at, s.last_position, s.turns, s.tokens, s.cost_nanos,
            msgspec.json.encode(s.fold).decode(), s.status)


def _agent_row(row: Any) -> AgentRow:
    return AgentRow(*row)


def _agent_args(a: AgentRow) -> tuple[Any, ...]:
    return (a.agent_id, a.tenant_id, a.created_at, a.version, a.archived, a.last_heartbeat_at,
            a.sessions, a.active_sessions, a.turns, a.tokens, a.cost_nanos)


async def wait_for_view(pool: asyncpg.Pool, position: int | None, seconds: float) -> None:
    """Wait until the view has applied the log up to ``position``; at most ``seconds``, then
    Unavailable; past the log's head, InvalidRequest."""
    await require(pool, NAME, position, seconds)
