"""A session's state as of any event, as a debugger wants it: ``state_view`` folds events with
the runtime's own fold (``engine.domain.session_state``) and the timeline's turn records, and
``state_at`` reads them from the store page by page. ``GET /v1/sessions/{id}/state?at=SEQ`` and
``spool replay --at SEQ`` both show it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal, cast

import msgspec

from engine.debug.timeline import Timeline, TurnRecord, TurnState
from engine.domain.session_state import SessionState, apply, fold
from engine.errors import InvalidRequest, NotFound
from engine.events import Event, SessionStatus, StopReason, Usage
from engine.log.store import EventStore

_PAGE = 1000
Decision = Literal["pending", "approve", "deny"]


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
