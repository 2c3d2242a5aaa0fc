"""A session's log read back as a timeline a person can follow (``spool replay``).

``Timeline`` takes a session's events in seq order and gives ``Entry``s: one per meaningful
event (a turn submitted, started, ended; a user message; interrupts, approvals, tool calls and
results), except that a model call is *one* entry, ``MessageEntry``, from its ``message_start``
to its ``message_stop``, with the text of its deltas joined and its usage and spend (the
``spend_recorded`` appended with the stop). What happened inside a message (its tool calls, an
approval asked for, an error answer to a bad call) follows the message's entry. Each entry says
how long after the previous event it came (``since_previous``), so stalls show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from engine.events import (
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
    SpendRecorded,
    StopReason,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    decode_data,
)

TurnState = Literal["queued", "running", "completed", "failed", "cancelled", "budget_exceeded"]


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
