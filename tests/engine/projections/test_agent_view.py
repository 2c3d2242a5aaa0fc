"""The ``agents`` projection against real Postgres.

The property: for random logs of agent and session events (turns queued, started, done; client
and server tool calls, results, approvals, messages cut short; spend; heartbeats; archives; and
events the view does not know or cannot decode), applied in random pages, every session
summary equals what ``engine.domain.session_state.fold`` (the runtime's own fold) says of its
stream, and every agent row equals ``engine.domain.agents.fold`` of its stream plus the totals
of its sessions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import agents as agents_module
from engine.domain import session_state as runtime_state
from engine.events import (
    AgentArchived,
    AgentConfig,
    AgentCreated,
    AgentHeartbeat,
    AgentUpdated,
    ApprovalRequested,
    ApprovalResolved,
    ContentBlock,
    Event,
    EventData,
    MemoryWritten,
    MessageDelta,
    MessageStart,
    MessageStop,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SessionInterrupted,
    SpendRecorded,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    decode_data,
    encode,
)
from engine.ids import new_id
from engine.log.store import Committed
from engine.projections.agents import (
    ACTIVE,
    AgentsProjection,
    StatusFold,
    Summary,
    agent_status,
)
from tests.helpers_projections import VIEW_SETTINGS, apply_in_slices

AGENTS = 2
SESSIONS = 3


# --- generated logs ----------------------------------------------------------------------------

_turn = st.sampled_from(["turn_a", "turn_b"])
_call = st.sampled_from(["toolu_1", "toolu_2"])
_executor = st.sampled_from(["client", "server"])
_stop = st.sampled_from(["end_turn", "tool_use", "max_tokens", "interrupted", "error"])
# Runs of events as a worker appends them, so turns get far enough to wait on someone.
_runs = st.one_of(
    st.builds(lambda t: [UserMessage(turn_id=t, content=[ContentBlock(text="hi")]),
                         TurnStarted(turn_id=t, worker="wrk_1")], _turn),
    st.builds(lambda t, c, e, r, approval: [
        MessageStart(turn_id=t, message_id="msg_1", model="m"),
        ToolUse(turn_id=t, message_id="msg_1", tool_use_id=c, name="x", input={}, executor=e),
        *([ApprovalRequested(approval_id=f"apr_{c}", turn_id=t, tool_use_id=c, name="x",
                             input={})] if approval else []),
        MessageStop(message_id="msg_1", stop_reason=r)],
        _turn, _call, _executor, _stop, st.booleans()),
)
_single_ops = st.one_of(
    st.builds(lambda t: UserMessage(turn_id=t, content=[ContentBlock(text="hi")]), _turn),
    st.builds(lambda t: TurnStarted(turn_id=t, worker="wrk_1"), _turn),
    st.builds(lambda t: MessageStart(turn_id=t, message_id="msg_1", model="m"), _turn),
    st.just(MessageDelta(message_id="msg_1", text="word ")),
    st.builds(lambda t, c, e: ToolUse(turn_id=t, message_id="msg_1", tool_use_id=c, name="x",
                                      input={}, executor=e),
              _turn, _call, _executor),
    st.builds(lambda r: MessageStop(message_id="msg_1", stop_reason=r), _stop),
    st.builds(lambda t, c: ToolResult(turn_id=t, tool_use_id=c, content=[]), _turn, _call),
    st.builds(lambda t, c: ApprovalRequested(approval_id=f"apr_{c}", turn_id=t, tool_use_id=c,
                                             name="x", input={}), _turn, _call),
    st.builds(lambda t, c, d: ApprovalResolved(approval_id=f"apr_{c}", turn_id=t,
                                               tool_use_id=c, decision=d),
              _turn, _call, st.sampled_from(["approve", "deny"])),
    st.builds(lambda t: SessionInterrupted(turn_id=t), _turn),
    st.builds(lambda t, s: SessionDone(turn_id=t, status=s), _turn,
              st.sampled_from(["completed", "failed", "cancelled"])),
    st.builds(lambda n, c: SpendRecorded(turn_id="turn_a", message_id="msg_1", agent_id="agt_x",
                                         model="m", usage=Usage(), tokens=n, cost_nanos=c),
              st.integers(0, 10_000), st.integers(0, 10**9)),
    st.just(SessionCreated(tenant_id="ten_x")),  # a second one only moves the summary's position
)
_session_ops = st.one_of(_runs, _single_ops)  # half of them runs: turns get somewhere
_agent_ops = st.one_of(
    st.builds(lambda n: AgentUpdated(version=n, config=AgentConfig(name="b")), st.integers(2, 9)),
    st.just(AgentArchived()),
    st.just(AgentHeartbeat(token_id="atk_x", note="alive")),
    st.just(MemoryWritten(key="k", value="v", session_id="ses_x")),
)
# What the view does not know, or cannot decode.
_garbage = st.sampled_from([
    ("session_noted", b'{"note":1}'), ("session_done", b'{"type":"session_done","status":"x"}'),
    ("tool_use", b'{"type":"tool_use"}'), ("agent_heartbeat", b'{"type":"agent_heartbeat"}'),
    ("agent_updated", b'{"type":"agent_updated","version":2,"config":{}}'),  # still a version
    ("agent_updated", b'{"type":"agent_updated","version":2,"config":{"name":"a","model":'
                      b'{"params":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}}}"),  # too deep
])
_ops = st.one_of(
    st.tuples(st.just("session"), st.integers(0, SESSIONS - 1), _session_ops),
    st.tuples(st.just("agent"), st.integers(0, AGENTS - 1), _agent_ops),
    st.tuples(st.just("garbage"), st.integers(0, SESSIONS + AGENTS - 1), _garbage),
)


@dataclass
class Log:
    tenant_id: str = field(default_factory=lambda: f"ten_{uuid.uuid4().hex[:12]}")
    agent_ids: list[str] = field(default_factory=lambda: [new_id("agt") for _ in range(AGENTS)])
    session_ids: list[str] = field(
        default_factory=lambda: [new_id("ses") for _ in range(SESSIONS)])
    events: list[Committed] = field(default_factory=list)
    streams: dict[str, list[Event]] = field(default_factory=dict)

    def add(self, op: tuple[str, int, Any]) -> None:
        kind, index, value = op
        if kind == "garbage":
            ids = [*self.session_ids, *self.agent_ids]
            stream_id = ids[index]
            self._append(stream_id, "session" if stream_id.startswith("ses_") else "agent",
                         value[0], value[1])
            return
        ids = self.session_ids if kind == "session" else self.agent_ids
        for data in value if isinstance(value, list) else [value]:
            self.append_data(ids[index], kind, data)

    def append_data(self, stream_id: str, stream_type: str, data: EventData) -> None:
        tag = type(data).__struct_config__.tag
        assert isinstance(tag, str)
        self._append(stream_id, stream_type, tag, encode(data))

    def _append(self, stream_id: str, stream_type: str, type_: str, data: bytes) -> None:
        stream = self.streams.setdefault(stream_id, [])
        position = len(self.events) + 1
        event = Event(
            id=uuid.uuid4(), stream_id=stream_id, stream_type=stream_type, seq=len(stream) + 1,
            position=position, type=type_, data=msgspec.Raw(data), meta=msgspec.Raw(b"{}"),
            created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=position),
        )
        stream.append(event)
        self.events.append((self.tenant_id, event))


def _decodable(events: list[Event]) -> list[Event]:
    kept = []
    for event in events:
        try:
            decode_data(event)
        except (msgspec.MsgspecError, RecursionError):
            continue
        kept.append(event)
    return kept


def expected(log: Log) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """Sessions folded by the runtime's fold, agents by engine.agents.fold plus their sessions."""
    sessions: dict[str, tuple[Any, ...]] = {}
    for session_id in log.session_ids:
        events = log.streams[session_id]
        state = runtime_state.fold(_decodable(events))
        spend = [d for d in map(decode_data, _decodable(events)) if isinstance(d, SpendRecorded)]
        created = state.created
        sessions[session_id] = (
            created.agent_id, created.agent_version, created.title, state.status,
            state.finished, sum(s.tokens for s in spend), sum(s.cost_nanos for s in spend),
            events[0].created_at, events[-1].created_at, events[-1].position)
    agents: dict[str, tuple[Any, ...]] = {}
    for agent_id in log.agent_ids:
        events = log.streams[agent_id]
        agent = agents_module.fold(events)  # a version it cannot read still counts
        events = _decodable(events)
        beats = [e.created_at for e in events if e.type == "agent_heartbeat"]
        mine = [s for s in sessions.values() if s[0] == agent_id]
        agents[agent_id] = (
            agent.version, agent.status == "archived", beats[-1] if beats else None, len(mine),
            sum(s[3] in ACTIVE for s in mine), sum(s[4] for s in mine), sum(s[5] for s in mine),
            sum(s[6] for s in mine))
    return sessions, agents


async def actual(conn: Any, tenant_id: str) -> tuple[dict[str, tuple[Any, ...]],
                                                     dict[str, tuple[Any, ...]]]:
    sessions = await conn.fetch(
        "SELECT session_id, agent_id, agent_version, title, status, turns, tokens, cost_nanos,"
        " created_at, updated_at, last_position FROM session_summaries WHERE tenant_id = $1",
        tenant_id)
    agents = await conn.fetch(
        "SELECT agent_id, version, archived, last_heartbeat_at, sessions, active_sessions, turns,"
        " tokens, cost_nanos FROM agents WHERE tenant_id = $1", tenant_id)
    return ({row[0]: tuple(row[1:]) for row in sessions},
            {row[0]: tuple(row[1:]) for row in agents})


@VIEW_SETTINGS
@given(agent_of=st.lists(st.none() | st.integers(0, AGENTS - 1), min_size=SESSIONS,
                         max_size=SESSIONS),
       ops=st.lists(_ops, min_size=5, max_size=80), cuts=st.sets(st.integers(1, 120), max_size=8),
       archived=st.lists(st.booleans(), min_size=SESSIONS, max_size=SESSIONS))
async def test_the_view_equals_the_runtime_fold(
    pool: asyncpg.Pool, agent_of: list[int | None], ops: list[tuple[str, int, Any]],
    cuts: set[int], archived: list[bool],
) -> None:
    log = Log()
    for agent_id in log.agent_ids:
        log.append_data(agent_id, "agent", AgentCreated(config=AgentConfig(name="a")))
    for session_id, agent in zip(log.session_ids, agent_of, strict=True):
        log.append_data(session_id, "session", SessionCreated(
            tenant_id=log.tenant_id, agent_id=None if agent is None else log.agent_ids[agent],
            agent_version=None if agent is None else 1, title=f"t {session_id[-4:]}"))
    for op in ops:
        log.add(op)
    for index, archive in enumerate(archived):  # at the end: nothing moves an archived status
        if archive:
            log.add(("session", index, SessionArchived()))
    async with pool.acquire() as conn:
        await apply_in_slices(conn, AgentsProjection(), log.events, cuts)
        assert await actual(conn, log.tenant_id) == expected(log)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(_session_ops, min_size=5, max_size=40))
def test_the_status_fold_moves_as_the_runtime_fold_after_every_event(
    ops: list[Any],
) -> None:
    log = Log()
    session_id = log.session_ids[0]
    log.append_data(session_id, "session", SessionCreated(  # with an agent: turns run
        tenant_id=log.tenant_id, agent_id=log.agent_ids[0], agent_version=1))
    for op in ops:
        log.add(("session", 0, op))
    log.add(("session", 0, SessionArchived()))
    [created, *rest] = log.streams[session_id]
    state, fold = runtime_state.fold([created]), StatusFold()
    for event in rest:
        runtime_state.apply(state, event)
        fold.apply(decode_data(event))
        assert fold.status == state.status, event.type


def test_agent_status_is_busy_then_offline_then_idle() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = now - timedelta(seconds=61)
    assert agent_status(1, old, now, 60) == "busy"  # a running session wins
    assert agent_status(0, old, now, 60) == "offline"
    assert agent_status(0, now - timedelta(seconds=59), now, 60) == "idle"
    assert agent_status(0, None, now, 60) == "idle"  # never sent one: no runtime to lose


def test_messages_to_a_session_without_an_agent_queue_no_turn() -> None:
    """A session without an agent only records messages: both folds keep it idle, and
    neither keeps a queue that would grow with every message."""
    log = Log()
    session_id = log.session_ids[0]
    log.append_data(session_id, "session", SessionCreated(tenant_id=log.tenant_id))
    for index in range(5):
        log.add(("session", 0, UserMessage(turn_id=f"turn_{index}",
                                           content=[ContentBlock(text="hi")])))
    [created, *rest] = log.streams[session_id]
    state = runtime_state.fold([created, *rest])
    summary = Summary(session_id, log.tenant_id, None, None, None, created.created_at,
                      created.created_at, created.position)
    for event in rest:
        summary.apply(event, decode_data(event))
    assert state.status == summary.status == "idle"
    assert state.queue == [] and summary.fold.queue == []
    assert [m.text for m in state.conversation] == ["hi"] * 5  # recorded as conversation
