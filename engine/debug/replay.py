"""Replay debugging: a session's log read back as a timeline a person can follow, and the
session's state as of any event.

``Timeline`` takes a session's events in seq order and gives ``Entry``s: one per meaningful
event (a turn submitted, started, ended; a user message; interrupts, approvals, tool calls and
results), except that a model call is *one* entry, ``MessageEntry``, from its ``message_start``
to its ``message_stop``, with the text of its deltas joined and its usage and spend (the
``spend_recorded`` appended with the stop). What happened inside a message (its tool calls, an
approval asked for, an error answer to a bad call) follows the message's entry. Each entry says
how long after the previous event it came (``since_previous``), so stalls show.

``state_view`` folds the events up to a seq with the runtime's own fold
(``engine.domain.session_state``) and returns what a debugger needs as a wire struct:
``GET /v1/sessions/{id}/state?at=SEQ`` and ``spool replay --at SEQ`` both show it.

``SessionReader`` is the operator's way in (``spool replay``): it finds a session by id alone
(the tenant comes from the ``streams`` row), reads it, and follows it by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg
import msgspec

from engine.domain.session_state import SessionState, apply, fold
from engine.errors import InvalidRequest, NotFound
from engine.events import (
    SESSION_ARCHIVED,
    AgentConfig,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SessionInterrupted,
    SessionStatus,
    SpendRecorded,
    StopReason,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    decode_data,
)
from engine.infra.db import connection
from engine.log.store import EventStore

_PAGE = 1000
Decision = Literal["pending", "approve", "deny"]
TurnState = Literal["queued", "running", "completed", "failed", "cancelled", "budget_exceeded"]


# --- the timeline -------------------------------------------------------------------------------


class Entry(msgspec.Struct, tag_field="kind", kw_only=True):
    """One line of the timeline. ``seq``..``last_seq``: the events it covers; ``at``: when the
    first was appended; ``since_previous``: seconds since the event before it (0 for the
    first); ``turn``: the turn's number in the session (1 = the first message submitted)."""

    seq: int
    last_seq: int
    at: datetime
    since_previous: float
    turn: int | None = None
    turn_id: str | None = None


class SessionCreatedEntry(Entry, tag="session_created"):
    agent_id: str | None
    agent_version: int | None
    title: str | None


class SubmittedEntry(Entry, tag="user_message"):
    text: str


class TurnStartedEntry(Entry, tag="turn_started"):
    worker: str


class MessageEntry(Entry, tag="message"):
    """A model call. ``stop_reason`` None: the log ends inside it (still streaming, or cut)."""

    message_id: str
    model: str
    text: str
    tool_use_ids: list[str]
    stop_reason: StopReason | None
    usage: Usage | None
    spend_tokens: int | None = None  # what spend_recorded billed
    cost_nanos: int | None = None
    duration: float | None = None  # seconds from message_start to message_stop


class ToolUseEntry(Entry, tag="tool_use"):
    tool_use_id: str
    name: str
    input: dict[str, Any]
    executor: Literal["server", "client"]


class ApprovalRequestedEntry(Entry, tag="approval_requested"):
    approval_id: str
    tool_use_id: str
    name: str


class ApprovalResolvedEntry(Entry, tag="approval_resolved"):
    approval_id: str
    tool_use_id: str
    decision: Literal["approve", "deny"]
    reason: str | None


class ToolResultEntry(Entry, tag="tool_result"):
    tool_use_id: str
    name: str | None
    text: str
    is_error: bool


class InterruptedEntry(Entry, tag="interrupted"):
    reason: str


class TurnDoneEntry(Entry, tag="turn_done"):
    status: str
    error: str | None
    model_calls: int
    tokens: int
    cost_nanos: int
    duration: float  # seconds since the turn started (or was submitted, if it never started)


class ArchivedEntry(Entry, tag="archived"):
    pass


class OtherEntry(Entry, tag="event"):
    """An event the timeline has no line of its own for (or cannot decode)."""

    type: str


AnyEntry = (
    SessionCreatedEntry | SubmittedEntry | TurnStartedEntry | MessageEntry | ToolUseEntry
    | ApprovalRequestedEntry | ApprovalResolvedEntry | ToolResultEntry | InterruptedEntry
    | TurnDoneEntry | ArchivedEntry | OtherEntry
)


@dataclass
class TurnRecord:
    """A turn as the timeline saw it."""

    number: int
    turn_id: str
    text: str
    submitted_seq: int
    submitted_at: datetime
    state: TurnState = "queued"
    started_seq: int | None = None
    started_at: datetime | None = None
    ended_seq: int | None = None
    model_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_nanos: int = 0
    error: str | None = None

    @property
    def tokens(self) -> int:
        """Input + output: what ``limits.max_tokens_per_turn`` counts."""
        return self.usage.input_tokens + self.usage.output_tokens


@dataclass
class _Open:
    """A message between its start and its stop."""

    entry: MessageEntry
    started: datetime
    text: list[str] = field(default_factory=list)
    inside: list[AnyEntry] = field(default_factory=list)  # lines that follow the message's


class Timeline:
    """Events in, entries out. ``feed`` each event in seq order; ``settle`` once nothing more
    is to be read for now (a stopped message waits for the spend record appended with its stop,
    in the same commit); ``finish`` at the end (a message the log ends inside comes out as an
    open one)."""

    def __init__(self) -> None:
        self.turns: dict[str, TurnRecord] = {}
        self.last_seq = 0
        self._previous: datetime | None = None
        self._open: dict[str, _Open] = {}
        self._stopped: _Open | None = None
        self._tool_names: dict[str, str] = {}

    def feed(self, event: Event) -> list[AnyEntry]:
        since = (event.created_at - self._previous).total_seconds() if self._previous else 0.0
        self._previous = event.created_at
        self.last_seq = event.seq
        base: dict[str, Any] = {"seq": event.seq, "last_seq": event.seq, "at": event.created_at,
                "since_previous": round(since, 6)}
        try:
            data = decode_data(event)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return [*self.settle(), OtherEntry(**base, type=event.type)]
        out: list[AnyEntry] = []
        if self._stopped is not None:
            if isinstance(data, SpendRecorded) and data.message_id == \
                    self._stopped.entry.message_id:
                self._stopped.entry.spend_tokens = data.tokens
                self._stopped.entry.cost_nanos = data.cost_nanos
                self._stopped.entry.last_seq = event.seq
                turn = self.turns.get(data.turn_id)
                if turn is not None:
                    turn.cost_nanos += data.cost_nanos
                return self.settle()
            out = self.settle()
        entry = self._entry(data, event, base)
        if entry is None:
            return out
        open_message = self._inside(data)
        if open_message is not None:
            open_message.inside.append(entry)
            return out
        return [*out, entry]

    def settle(self) -> list[AnyEntry]:
        stopped, self._stopped = self._stopped, None
        return [] if stopped is None else [stopped.entry, *stopped.inside]

    def finish(self) -> list[AnyEntry]:
        out = self.settle()
        for message in self._open.values():
            message.entry.text = "".join(message.text)
            out += [message.entry, *message.inside]
        self._open.clear()
        return out

    def open_message(self) -> MessageEntry | None:
        """The message the log stops inside, with its text so far (None if there is none)."""
        for message in self._open.values():
            message.entry.text = "".join(message.text)
            return message.entry
        return None

    def _inside(self, data: Any) -> _Open | None:
        """The open message an event belongs inside (what the model's output set off)."""
        if isinstance(data, ToolUse):
            return self._open.get(data.message_id)
        if isinstance(data, ToolResult | ApprovalRequested):
            for message in self._open.values():
                if data.tool_use_id in message.entry.tool_use_ids:
                    return message
        return None

    def _entry(self, data: Any, event: Event, base: dict[str, Any]) -> AnyEntry | None:
        match data:
            case SessionCreated():
                return SessionCreatedEntry(**base, agent_id=data.agent_id,
                                           agent_version=data.agent_version, title=data.title)
            case UserMessage():
                text = "".join(block.text for block in data.content)
                self.turns[data.turn_id] = TurnRecord(len(self.turns) + 1, data.turn_id, text,
                                                      event.seq, event.created_at)
                return SubmittedEntry(**self._of(data.turn_id), **base, text=text)
            case TurnStarted():
                started = self.turns.get(data.turn_id)
                if started is not None:
                    started.state, started.started_seq, started.started_at = (
                        "running", event.seq, event.created_at)
                return TurnStartedEntry(**self._of(data.turn_id), **base, worker=data.worker)
            case MessageStart():
                entry = MessageEntry(**self._of(data.turn_id), **base,
                                     message_id=data.message_id, model=data.model, text="",
                                     tool_use_ids=[], stop_reason=None, usage=None)
                self._open[data.message_id] = _Open(entry, event.created_at)
                return None
            case MessageDelta():
                message = self._open.get(data.message_id)
                if message is not None:
                    message.text.append(data.text)
                    message.entry.last_seq = event.seq
                return None
            case MessageStop():
                self._stop(data, event)
                return None
            case ToolUse():
                self._tool_names[data.tool_use_id] = data.name
                message = self._open.get(data.message_id)
                if message is not None:
                    message.entry.tool_use_ids.append(data.tool_use_id)
                return ToolUseEntry(**self._of(data.turn_id), **base,
                                    tool_use_id=data.tool_use_id, name=data.name,
                                    input=data.input, executor=data.executor)
            case ApprovalRequested():
                return ApprovalRequestedEntry(**self._of(data.turn_id), **base,
                                              approval_id=data.approval_id,
                                              tool_use_id=data.tool_use_id, name=data.name)
            case ApprovalResolved():
                return ApprovalResolvedEntry(**self._of(data.turn_id), **base,
                                             approval_id=data.approval_id,
                                             tool_use_id=data.tool_use_id,
                                             decision=data.decision, reason=data.reason)
            case ToolResult():
                return ToolResultEntry(**self._of(data.turn_id), **base,
                                       tool_use_id=data.tool_use_id,
                                       name=self._tool_names.get(data.tool_use_id),
                                       text="".join(block.text for block in data.content),
                                       is_error=data.is_error)
            case SessionInterrupted():
                return InterruptedEntry(**self._of(data.turn_id), **base, reason=data.reason)
            case SessionDone():
                return self._done(data, event, base)
            case SessionArchived():
                return ArchivedEntry(**base)
            case SpendRecorded():  # not right after its message's stop: a line of its own
                spent = self.turns.get(data.turn_id)
                if spent is not None:
                    spent.cost_nanos += data.cost_nanos
                return OtherEntry(**self._of(data.turn_id), **base, type=event.type)
            case _:
                return OtherEntry(**base, type=event.type)

    def _stop(self, data: MessageStop, event: Event) -> None:
        message = self._open.pop(data.message_id, None)
        if message is None:
            return
        entry = message.entry
        entry.text = "".join(message.text)
        entry.stop_reason, entry.usage, entry.last_seq = data.stop_reason, data.usage, event.seq
        entry.duration = round((event.created_at - message.started).total_seconds(), 6)
        turn = self.turns.get(entry.turn_id or "")
        if turn is not None:
            turn.model_calls += 1
            turn.usage = turn.usage + data.usage
        self._stopped = message

    def _done(self, data: SessionDone, event: Event, base: dict[str, Any]) -> TurnDoneEntry:
        turn = self.turns.get(data.turn_id)
        began = event.created_at
        if turn is not None:
            turn.state, turn.ended_seq, turn.error = data.status, event.seq, data.error
            began = turn.started_at or turn.submitted_at
        return TurnDoneEntry(
            **self._of(data.turn_id), **base, status=data.status, error=data.error,
            model_calls=turn.model_calls if turn else 0, tokens=turn.tokens if turn else 0,
            cost_nanos=turn.cost_nanos if turn else 0,
            duration=round((event.created_at - began).total_seconds(), 6))

    def _of(self, turn_id: str) -> dict[str, Any]:
        turn = self.turns.get(turn_id)
        return {"turn": turn.number if turn else None, "turn_id": turn_id}


def timeline(events: list[Event]) -> list[AnyEntry]:
    """The whole timeline of ``events`` (a message the log ends inside comes out open)."""
    line = Timeline()
    entries = [entry for event in events for entry in line.feed(event)]
    return entries + line.finish()


# --- the state at a seq -----------------------------------------------------------------------


class TurnView(msgspec.Struct):
    """A turn of the session as of ``at``: ``queued``, ``running`` (waiting on a client or a
    human included), or how it ended. ``tokens`` is input + output."""

    number: int
    turn_id: str
    status: TurnState
    text: str  # what the user sent
    model_calls: int
    tokens: int
    usage: Usage
    cost_nanos: int
    error: str | None
    submitted_seq: int
    started_seq: int | None
    ended_seq: int | None


class OpenMessageView(msgspec.Struct):
    """A model call started and not stopped as of ``at``: still streaming, or cut (its worker
    died; the next one closes it as interrupted and asks again)."""

    message_id: str
    model: str
    text: str  # the deltas so far, joined
    tool_use_ids: list[str]


class ToolCallView(msgspec.Struct):
    tool_use_id: str
    name: str
    input: dict[str, Any]
    executor: Literal["server", "client"]
    approval: Decision | None  # None: needs no approval


class ApprovalView(msgspec.Struct):
    approval_id: str
    tool_use_id: str
    decision: Decision


class CurrentTurnView(msgspec.Struct):
    """The running turn. ``tool_calls``: its calls without a result yet;
    ``pending_tool_use_ids``: those a client may answer now (``POST .../tool_results``);
    ``waiting_on_approvals``: approval ids a human has to decide."""

    number: int | None
    turn_id: str
    interrupted: bool
    model_calls: int
    tokens: int
    last_stop: StopReason | None
    open_message: OpenMessageView | None
    tool_calls: list[ToolCallView]
    pending_tool_use_ids: list[str]
    approvals: list[ApprovalView]
    waiting_on_approvals: list[str]


class QueuedTurnView(msgspec.Struct):
    turn_id: str
    text: str
    interrupted: bool  # removed from the queue; ends cancelled without starting


class ConversationToolCall(msgspec.Struct):
    tool_use_id: str
    name: str
    input: dict[str, Any]


class ConversationMessage(msgspec.Struct):
    """One entry of the conversation a model call would be sent now (before each adapter's
    repairs: see the adapters)."""

    role: Literal["user", "assistant", "tool"]
    text: str
    tool_calls: list[ConversationToolCall]
    tool_use_id: str | None
    is_error: bool


class SessionStateView(msgspec.Struct):
    """The session folded up to event ``at`` (``last_seq`` is its last event now)."""

    session_id: str
    at: int
    at_time: datetime  # when event ``at`` was appended
    last_seq: int
    status: SessionStatus
    agent_id: str | None
    agent_version: int | None
    title: str | None
    turns: list[TurnView]
    current: CurrentTurnView | None
    queue: list[QueuedTurnView]
    usage: Usage
    cost_nanos: int
    model_calls: int  # calls that got an answer (the scripted adapter's step)
    conversation: list[ConversationMessage]


def state_view(events: list[Event], *, last_seq: int | None = None) -> SessionStateView:
    """The state after ``events`` (a session's first events, from seq 1, in order)."""
    state, line = fold(events), Timeline()
    for event in events:
        line.feed(event)
    return _state_view(state, line, last_seq)


def _state_view(state: SessionState, line: Timeline, last_seq: int | None) -> SessionStateView:
    created = state.created
    return SessionStateView(
        session_id=state.session_id, at=state.last_seq, at_time=state.updated_at,
        last_seq=last_seq if last_seq is not None else state.last_seq, status=state.status,
        agent_id=created.agent_id, agent_version=created.agent_version, title=created.title,
        turns=[_turn_view(turn, state) for turn in line.turns.values()],
        current=_current_view(state, line), queue=[
            QueuedTurnView(turn.turn_id, "".join(b.text for b in turn.content), turn.interrupted)
            for turn in state.queue],
        usage=state.usage, cost_nanos=sum(turn.cost_nanos for turn in line.turns.values()),
        model_calls=state.model_calls, conversation=[
            ConversationMessage(
                message.role, message.text,
                [ConversationToolCall(t.tool_use_id, t.name, t.input) for t in message.tool_calls],
                message.tool_use_id, message.is_error)
            for message in state.conversation])


def _turn_view(turn: TurnRecord, state: SessionState) -> TurnView:
    return TurnView(turn.number, turn.turn_id, turn.state, turn.text, turn.model_calls,
                    turn.tokens, turn.usage, turn.cost_nanos, turn.error, turn.submitted_seq,
                    turn.started_seq, turn.ended_seq)


def _current_view(state: SessionState, line: Timeline) -> CurrentTurnView | None:
    turn = state.current
    if turn is None:
        return None
    record = line.turns.get(turn.turn_id)
    message = line.open_message() if turn.open_message is not None else None
    return CurrentTurnView(
        number=record.number if record else None, turn_id=turn.turn_id,
        interrupted=turn.interrupted, model_calls=turn.model_calls, tokens=turn.tokens,
        last_stop=turn.last_stop,
        open_message=OpenMessageView(message.message_id, message.model, message.text,
                                     list(message.tool_use_ids)) if message else None,
        tool_calls=[ToolCallView(t.tool_use_id, t.name, t.input, t.executor,
                                 cast(Decision | None, turn.approval(t.tool_use_id)))
                    for t in turn.tool_uses.values()],
        pending_tool_use_ids=[t.tool_use_id for t in turn.waiting_on_client],
        approvals=[ApprovalView(approval_id, tool_use_id, cast(Decision, decision or "pending"))
                   for tool_use_id, (approval_id, decision) in turn.approvals.items()],
        waiting_on_approvals=turn.waiting_on_human)


async def _pages_until(store: EventStore, tenant_id: str, session_id: str,
                      until: int) -> AsyncIterator[list[Event]]:
    """The session's events with seq 1..``until``, a page at a time."""
    after = 0
    while after < until:
        page = await store.read_stream(session_id, tenant_id=tenant_id, after=after,
                                       limit=min(_PAGE, until - after))
        if not page:
            return
        yield page
        after = page[-1].seq


# --- reading a session as an operator (spool replay) ---------------------------------------------


class SessionReader:
    """A session found by its id alone, for operators: ``spool replay`` has the database, not
    an API key, so the tenant comes from the session's ``streams`` row."""

    def __init__(self, pool: asyncpg.Pool, session_id: str, tenant_id: str) -> None:
        self.session_id = session_id
        self.tenant_id = tenant_id
        self._store = EventStore(pool)  # reads only: its appender is never started

    @classmethod
    async def open(cls, pool: asyncpg.Pool, session_id: str) -> SessionReader:
        """NotFound if no session has that id."""
        async with connection(pool, "finding a session") as conn:
            row = await conn.fetchrow(
                "SELECT tenant_id, stream_type FROM streams WHERE stream_id = $1", session_id)
        if row is None or row["stream_type"] != "session":
            raise NotFound(f"no session {session_id!r} in this database")
        return cls(pool, session_id, row["tenant_id"])

    async def events(self, *, after: int = 0, until: int | None = None) -> list[Event]:
        """Events with ``after`` < seq <= ``until`` (to the end when None)."""
        events: list[Event] = []
        while True:
            limit = _PAGE if until is None else min(_PAGE, until - after - len(events))
            if limit <= 0:
                return events
            page = await self._store.read_stream(self.session_id, tenant_id=self.tenant_id,
                                                 after=after + len(events), limit=limit)
            events.extend(page)
            if len(page) < limit:
                return events

    async def state_at(self, at: int | None) -> SessionStateView:
        return await state_at(self._store, self.tenant_id, self.session_id, at)

    async def agent_config(self, created: Event) -> AgentConfig | None:
        """The config of the agent version the session pinned (None: it has no agent)."""
        from engine.domain.agents import Agents

        data = decode_data(created)
        if not isinstance(data, SessionCreated) or data.agent_id is None:
            return None
        found = await Agents(self._store).version(self.tenant_id, data.agent_id,
                                                  data.agent_version, archived_too=True)
        return found.config

    async def follow(self, *, after: int, stop: asyncio.Event,
                     interval: float = 0.2) -> AsyncIterator[list[Event]]:
        """Batches of new events as they are appended (polled every ``interval`` seconds),
        until ``stop`` is set or the session is archived (nothing can follow that). An empty
        batch means nothing came in that interval."""
        while not stop.is_set():
            batch = await self.events(after=after)
            if batch:
                after = batch[-1].seq
            yield batch
            if batch and batch[-1].type == SESSION_ARCHIVED:
                return
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


async def state_at(store: EventStore, tenant_id: str, session_id: str,
                   at: int | None) -> SessionStateView:
    """Shared by the API and the CLI: the state as of ``at`` (None: now). ``at`` outside
    1..last seq is InvalidRequest naming ``at``; an unknown or foreign session NotFound.
    Folded from scratch (a past state is not cached)."""
    last = (await store.last_event(session_id, tenant_id=tenant_id)).seq
    if at is not None and not 1 <= at <= last:
        raise InvalidRequest(f"at must be between 1 and {last}, the session's last event",
                             field="at")
    # Folded page by page, nothing kept: a long session costs time here, not memory.
    state: SessionState | None = None
    line = Timeline()
    async for page in _pages_until(store, tenant_id, session_id, at or last):
        if state is None:
            if page[0].type != "session_created":
                raise NotFound(f"session {session_id!r} not found")
            state = fold(page)
        else:
            for event in page:
                apply(state, event)
        for event in page:
            line.feed(event)
    if state is None:
        raise NotFound(f"session {session_id!r} not found")
    return _state_view(state, line, last)
