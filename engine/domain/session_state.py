"""A session folded from its log: its turns (queued, running, done), the conversation a model
sees, usage, and the status every transition of which is an event:

    idle --user_message--> running (turn_started) --tool_use (client)--> requires_action
    requires_action --tool_result (all of them)--> running --session_done--> idle
    any --session_archived--> archived

The runtime decides its next step from this state alone, so a worker that takes over a session
after a crash picks up exactly where the log stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from engine.events import (
    ApprovalRequested,
    ApprovalResolved,
    ContentBlock,
    Event,
    EventData,
    MessageDelta,
    MessageStart,
    MessageStop,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SessionInterrupted,
    SessionStatus,
    StopReason,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    decode_data,
)
from engine.log.session_log import SessionLog

# Interrupts that are not the user's doing: the cancelled turn's session_done carries the
# reason as its error (a user's interrupt ends it with none, as it always has).
TENANT_SUSPENDED = "tenant suspended"
SERVER_REASONS = frozenset({TENANT_SUSPENDED})
_PAGE = 1000


@dataclass
class ChatMessage:
    """One entry of the conversation as adapters see it."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    tool_calls: list[ToolUse] = field(default_factory=list)  # assistant
    tool_use_id: str | None = None  # tool
    is_error: bool = False  # tool


@dataclass
class Turn:
    turn_id: str
    content: list[ContentBlock]
    started: bool = False
    done: bool = False
    interrupted: bool = False
    cancel_error: str | None = None  # the error its session_done carries, if interrupted so
    open_message: str | None = None  # started, not stopped (a worker died mid-message)
    model_calls: int = 0
    tokens: int = 0
    last_stop: StopReason | None = None
    tool_uses: dict[str, ToolUse] = field(default_factory=dict)  # without a result yet
    # tool_use_id -> its approval: (approval_id, decision or None while a human decides)
    approvals: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def approval(self, tool_use_id: str) -> str | None:
        """"pending", "approve", "deny", or None for a call that needs no approval."""
        found = self.approvals.get(tool_use_id)
        if found is None:
            return None
        return found[1] or "pending"

    @property
    def waiting_on_client(self) -> list[ToolUse]:
        """Client tool calls the client may answer now (approved, or needing no approval)."""
        return [t for t in self.tool_uses.values() if t.executor == "client"
                and self.approval(t.tool_use_id) in (None, "approve")]

    @property
    def waiting_on_human(self) -> list[str]:
        """Approval ids a human has to decide."""
        return [approval_id for approval_id, decision in self.approvals.values()
                if decision is None]


@dataclass
class SessionState:
    session_id: str
    created: SessionCreated
    created_at: datetime
    updated_at: datetime
    last_seq: int = 0
    archived: bool = False
    queue: list[Turn] = field(default_factory=list)  # submitted, not started
    current: Turn | None = None
    finished: int = 0
    usage: Usage = field(default_factory=Usage)
    # Model calls over the session's life that got an answer (a reply or an error), not the
    # ones cut short by a dead worker: the scripted adapter's step, so a redone call replays.
    model_calls: int = 0
    conversation: list[ChatMessage] = field(default_factory=list)
    tool_turns: dict[str, str] = field(default_factory=dict)  # every tool_use id -> its turn
    answered: set[str] = field(default_factory=set)  # tool_use ids that have a result
    _draft: list[str] = field(default_factory=list)  # the open message's text so far
    _draft_tools: list[ToolUse] = field(default_factory=list)

    @property
    def status(self) -> SessionStatus:
        if self.archived:
            return "archived"
        if self.current is not None:
            waiting = self.current.waiting_on_client or self.current.waiting_on_human
            return "requires_action" if waiting else "running"
        return "running" if self.queue else "idle"

    @property
    def busy(self) -> bool:
        """A turn is running or waiting to: a new message is refused unless queued."""
        return self.current is not None or bool(self.queue)


async def catch_up(
    store: SessionLog, tenant_id: str, session_id: str, state: SessionState | None,
) -> SessionState:
    """``state`` brought up to the end of the session's log, reading only what came after it
    (the whole log when None). Events are applied strictly in seq order, so two callers
    catching up one shared state cannot apply an event twice."""
    if state is None:
        return fold(await store.read_whole_stream(session_id, tenant_id=tenant_id))
    while True:
        came = await store.read_stream(session_id, tenant_id=tenant_id, after=state.last_seq,
                                       limit=_PAGE)
        for event in came:
            if event.seq == state.last_seq + 1:
                apply(state, event)
        if len(came) < _PAGE:
            return state


def fold(events: list[Event]) -> SessionState:
    first = decode_data(events[0])
    if not isinstance(first, SessionCreated):
        raise ValueError(f"stream {events[0].stream_id!r} is not a session")
    state = SessionState(events[0].stream_id, first, events[0].created_at, events[0].created_at)
    for event in events:
        apply(state, event)
    return state


def apply(state: SessionState, event: Event, data: EventData | None = None) -> None:
    """``event`` folded into ``state``; ``data``: its data already decoded (the Struct its
    writer appended), so that it is not decoded again."""
    state.last_seq = event.seq
    state.updated_at = event.created_at
    if data is None:
        data = decode_data(event)
    match data:
        case UserMessage() if state.created.agent_id is None:
            # Without an agent a message is only recorded: no turn queues, it is conversation.
            state.conversation.append(opening_message(Turn(data.turn_id, data.content)))
        case UserMessage():
            state.queue.append(Turn(data.turn_id, data.content))
        case TurnStarted():
            _start(state, data.turn_id)
        case MessageStart():
            if state.current is not None:
                state.current.open_message = data.message_id
            state._draft, state._draft_tools = [], []
        case MessageDelta():
            state._draft.append(data.text)
        case ToolUse():
            state.tool_turns[data.tool_use_id] = data.turn_id
            if state.current is not None:
                state.current.tool_uses[data.tool_use_id] = data
            state._draft_tools.append(data)
        case MessageStop():
            _stop_message(state, data)
        case ToolResult():
            state.answered.add(data.tool_use_id)
            if state.current is not None:
                state.current.tool_uses.pop(data.tool_use_id, None)
            text = "".join(block.text for block in data.content)
            state.conversation.append(ChatMessage("tool", text, tool_use_id=data.tool_use_id,
                                                  is_error=data.is_error))
        case ApprovalRequested():
            if state.current is not None:
                state.current.approvals[data.tool_use_id] = (data.approval_id, None)
        case ApprovalResolved():
            if state.current is not None and data.tool_use_id in state.current.approvals:
                state.current.approvals[data.tool_use_id] = (data.approval_id, data.decision)
        case SessionInterrupted():
            _interrupt(state, data.turn_id, data.reason)
        case SessionDone():
            _done(state, data.turn_id)
        case SessionArchived():
            state.archived = True
        case _:
            pass


def _start(state: SessionState, turn_id: str) -> None:
    for index, turn in enumerate(state.queue):
        if turn.turn_id == turn_id:
            state.current = state.queue.pop(index)
            state.current.started = True
            state.conversation.append(opening_message(state.current))
            return


def opening_message(turn: Turn) -> ChatMessage:
    """What a turn adds to the conversation when it starts: its user message."""
    return ChatMessage("user", "".join(block.text for block in turn.content))


def _stop_message(state: SessionState, data: MessageStop) -> None:
    """A message ends. One cut short (the model failed, or its worker died) is not part of the
    conversation, and its tool calls are dropped: the model is asked again."""
    turn = state.current
    state.usage = state.usage + data.usage
    if data.stop_reason != "interrupted":
        state.model_calls += 1
    complete = data.stop_reason not in ("error", "interrupted")
    if complete:
        state.conversation.append(ChatMessage("assistant", "".join(state._draft),
                                              tool_calls=list(state._draft_tools)))
    if turn is not None:
        turn.open_message = None
        turn.model_calls += 1
        turn.tokens += data.usage.input_tokens + data.usage.output_tokens
        turn.last_stop = data.stop_reason
        if not complete:
            for tool in state._draft_tools:
                turn.tool_uses.pop(tool.tool_use_id, None)
    state._draft, state._draft_tools = [], []


def _interrupt(state: SessionState, turn_id: str, reason: str) -> None:
    for turn in [*([state.current] if state.current else []), *state.queue]:
        if turn.turn_id == turn_id and not turn.interrupted:
            turn.interrupted = True
            turn.cancel_error = reason if reason in SERVER_REASONS else None


def _done(state: SessionState, turn_id: str) -> None:
    """A turn ended: the running one, or a queued one cancelled before it started."""
    if state.current is not None and state.current.turn_id == turn_id:
        state.current.done = True
        state.current = None
    else:
        state.queue = [turn for turn in state.queue if turn.turn_id != turn_id]
    state.finished += 1
