"""The event envelope and every event type, as msgspec Structs.

A type's schema only grows: new fields are optional, no field changes meaning. Stored JSON is
kept as ``msgspec.Raw`` so it is written to clients without being decoded and encoded again.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from engine.logging import get_logger

# Postgres text cannot hold NUL: every stored string that a request supplies carries this.
NUL_FREE = msgspec.Meta(pattern=r"^[^\x00]*$")

_log = get_logger("events")

STREAM_TYPES = ("session", "agent", "task", "board", "budget", "tenant")


class EventMeta(msgspec.Struct, omit_defaults=True, frozen=True):
    actor: str | None = None
    request_id: str | None = None
    causation_id: str | None = None


class Event(msgspec.Struct, frozen=True):
    """A stored event: the envelope clients receive."""

    id: uuid.UUID
    stream_id: str
    stream_type: str
    seq: int
    position: int
    type: str
    data: msgspec.Raw
    meta: msgspec.Raw
    created_at: datetime


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``data`` and ``meta`` are already-encoded JSON objects.

    Leave ``id`` unset for a new event (the store assigns one); set it to make the append
    idempotent: appending an id that is stored already returns the stored event."""

    type: str
    data: bytes
    id: uuid.UUID | None = None
    meta: bytes = b"{}"


# --- event data types -------------------------------------------------------------------------


class EventData(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Base of every event's ``data``; the tag is the event type."""


class ContentBlock(msgspec.Struct, tag_field="type", tag="text", frozen=True):
    text: str


class SessionCreated(EventData, tag="session_created"):
    tenant_id: str
    agent_id: str | None = None
    agent_version: int | None = None
    title: str | None = None
    metadata: dict[str, str] = {}


class UserMessage(EventData, tag="user_message"):
    turn_id: str
    content: list[ContentBlock]


SESSION_ARCHIVED = "session_archived"  # archiving is terminal: nothing follows it in a stream


class SessionArchived(EventData, tag=SESSION_ARCHIVED):
    pass


# --- turns: what a worker appends while it runs a turn (engine/runtime) ----------------------


class Usage(msgspec.Struct, kw_only=True):
    """Tokens as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f: getattr(self, f) + getattr(other, f) for f in self.__struct_fields__})


TurnStatus = Literal["completed", "failed", "cancelled", "budget_exceeded"]
StopReason = Literal["end_turn", "tool_use", "max_tokens", "interrupted", "error"]
# What a session is doing, folded from its stream (engine/domain/session_state.py) or the
# agents projection; both folds move it exactly alike.
SessionStatus = Literal["idle", "running", "requires_action", "archived"]


class TurnStarted(EventData, tag="turn_started"):
    turn_id: str
    worker: str  # which worker runs it (a later one takes over after a crash)


class MessageStart(EventData, tag="message_start"):
    turn_id: str
    message_id: str
    model: str


class MessageDelta(EventData, tag="message_delta"):
    message_id: str
    text: str


class MessageStop(EventData, tag="message_stop"):
    message_id: str
    stop_reason: StopReason
    usage: Usage = msgspec.field(default_factory=Usage)


class ToolUse(EventData, tag="tool_use"):
    turn_id: str
    message_id: str
    tool_use_id: str
    name: str
    input: dict[str, Any]
    executor: Literal["server", "client"]


class ToolResult(EventData, tag="tool_result"):
    turn_id: str
    tool_use_id: str
    content: list[ContentBlock]
    is_error: bool = False


class ApprovalRequested(EventData, tag="approval_requested"):
    approval_id: str
    turn_id: str
    tool_use_id: str
    name: str
    input: dict[str, Any]


class ApprovalResolved(EventData, tag="approval_resolved"):
    approval_id: str
    turn_id: str
    tool_use_id: str
    decision: Literal["approve", "deny"]
    reason: str | None = None


class SessionInterrupted(EventData, tag="session_interrupted"):
    turn_id: str
    reason: str = "interrupted"


class SessionDone(EventData, tag="session_done"):
    turn_id: str
    status: TurnStatus
    error: str | None = None


# --- agents: the config (stored whole in each version's event) and the agent stream's events ---
# Defaults are stored too (no omit_defaults): a stored version keeps its meaning even if a
# default changes later.

_Name = Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
_ToolName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Integers of bodies stay within what every JSON parser reads exactly (I-JSON: 2^53 - 1), and
# the OpenAPI document says so.
MAX_JSON_INT = 2**53 - 1
_Positive = Annotated[int, msgspec.Meta(ge=1, le=MAX_JSON_INT)]


class ScriptedToolCall(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: _ToolName
    input: dict[str, Any] = {}


_WORDS = re.compile(r"\S+\s*|\s+")

# A scripted step holds a worker slot while it sleeps: at most this long per word, and this long
# in all (checked when an agent is created or changed; a stored config is held to it when run).
MAX_WORD_DELAY = 10.0
MAX_STEP_DELAY = 60.0


def words_of(text: str) -> list[str]:
    """The deltas a step's text streams as."""
    return _WORDS.findall(text)


class ScriptStep(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One reply of the ``scripted`` adapter: text (streamed word by word), tool calls, or an
    error the model call fails with. Usage defaults to word counts."""

    text: Annotated[str, NUL_FREE] = ""
    tool_calls: list[ScriptedToolCall] = []
    error: Annotated[str, NUL_FREE] | None = None
    input_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_JSON_INT)] | None = None
    output_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_JSON_INT)] | None = None
    delay: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0  # seconds before each word


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    adapter: Literal["scripted", "openai", "anthropic"] = "scripted"
    name: _Name = "scripted"
    params: dict[str, Any] = {}  # passed to the provider as is (temperature, max_tokens, ...)
    script: list[ScriptStep] | None = None  # scripted only; without one it echoes


class ToolSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: _ToolName
    description: Annotated[str, NUL_FREE, msgspec.Meta(max_length=4000)] = ""
    input_schema: dict[str, Any] = msgspec.field(  # a JSON Schema (2020-12)
        default_factory=lambda: {"type": "object"})
    executor: Literal["server", "client"] = "client"
    requires_approval: bool = False
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_turns: _Positive | None = None  # model calls per turn
    max_tokens_per_turn: _Positive | None = None


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: _Name
    model: ModelConfig = ModelConfig()
    system: Annotated[str, NUL_FREE] | None = None
    tools: Annotated[list[ToolSpec], msgspec.Meta(max_length=128)] = []
    limits: Limits = Limits()
    metadata: Annotated[dict[_Name, Annotated[str, NUL_FREE, msgspec.Meta(max_length=2000)]],
                        msgspec.Meta(max_length=32)] = {}


class AgentCreated(EventData, tag="agent_created"):
    config: AgentConfig  # version 1


class AgentUpdated(EventData, tag="agent_updated"):
    version: int
    config: AgentConfig


class AgentArchived(EventData, tag="agent_archived"):
    pass


class MemoryWritten(EventData, tag="memory_written"):
    """The agent's memory (the memory_write tool), on the agent's stream; null deletes."""

    key: str
    value: str | None
    session_id: str


# --- spend and budgets (engine/domain/budgets.py) -------------------------------------------------


class SpendRecorded(EventData, tag="spend_recorded"):
    """What one model call cost, appended to the session in the same append as its
    ``message_stop``: exactly one per priced call, whatever crashes. ``usage.input_tokens``
    excludes cache reads and writes (every adapter reports it so); ``tokens`` is input + output
    + cache read + cache write (reasoning is part of output)."""

    turn_id: str
    message_id: str
    agent_id: str
    model: str
    usage: Usage
    tokens: int
    cost_nanos: int  # USD x 1e9 from the price table (engine/domain/budgets.py)
    priced: bool = True  # False: the price table has no entry for the model (cost 0)
    # True for a call cut short (interrupted, failed mid-stream): the input the provider
    # reported so far, and one output token per streamed delta.
    estimated: bool = False


BudgetPeriod = Literal["total", "month", "day"]


class BudgetLimit(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    tokens: int | None = None
    cost_nanos: int | None = None  # USD x 1e9


class BudgetSet(EventData, tag="budget_set"):
    """A scope's limits, whole (a period left out has no limit; no period: no budget). On the
    scope's ``budget`` stream: ``bud_tenant`` + tenant id, ``bud_`` + agent or session id."""

    scope: str  # "tenant", "agent:<id>" or "session:<id>"
    limits: dict[BudgetPeriod, BudgetLimit]


# --- agents at work: heartbeats (engine/domain/agents.py, the agents view) ------------------------


class AgentHeartbeat(EventData, tag="agent_heartbeat"):
    """An agent runtime (holding a runtime token) says it is alive, on the agent's stream."""

    token_id: str
    note: str | None = None


# --- boards and tasks (engine/domain/boards.py, engine/domain/tasks.py) ---------------------------
# A board is a ``board`` stream (brd_), a task a ``task`` stream (tsk_). task_created holds the
# whole task; task_updated only the fields that changed (absent = unchanged, null = cleared).

TaskStatus = Literal["inbox", "in_progress", "review", "done", "blocked"]
TaskPriority = Literal["low", "normal", "high", "urgent"]
# Why the engine (not a client) changed a task: its dependencies all became done, one of them
# is no longer done, or its board was deleted.
TaskCause = Literal["dependencies_done", "dependency_not_done", "board_deleted"]


class BoardCreated(EventData, tag="board_created"):
    name: str
    description: str | None


class BoardUpdated(EventData, tag="board_updated"):
    name: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET


class BoardDeleted(EventData, tag="board_deleted"):
    pass


class TaskCreated(EventData, tag="task_created"):
    board_id: str
    title: str
    description: str | None
    status: TaskStatus
    resume_status: TaskStatus | None  # set when created blocked by its dependencies
    priority: TaskPriority
    assignee_id: str | None
    due_at: datetime | None
    dependencies: list[str]


class TaskUpdated(EventData, tag="task_updated"):
    board_id: str | UnsetType = UNSET
    title: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    status: TaskStatus | UnsetType = UNSET
    resume_status: TaskStatus | UnsetType | None = UNSET
    priority: TaskPriority | UnsetType = UNSET
    assignee_id: str | UnsetType | None = UNSET
    due_at: datetime | UnsetType | None = UNSET
    dependencies: list[str] | UnsetType = UNSET
    cause: TaskCause | None = None  # set when the engine made the change


class TaskDeleted(EventData, tag="task_deleted"):
    cause: TaskCause | None = None


class TaskCommented(EventData, tag="task_commented"):
    comment_id: str
    body: str


AnyEventData = (
    SessionCreated | UserMessage | SessionArchived
    | TurnStarted | MessageStart | MessageDelta | MessageStop | ToolUse | ToolResult
    | ApprovalRequested | ApprovalResolved | SessionInterrupted | SessionDone
    | AgentCreated | AgentUpdated | AgentArchived | MemoryWritten | AgentHeartbeat
    | SpendRecorded | BudgetSet
    | BoardCreated | BoardUpdated | BoardDeleted
    | TaskCreated | TaskUpdated | TaskDeleted | TaskCommented
)

# Every event type the engine appends (each one's tag), e.g. what ``?types=`` may name.
EVENT_TYPES: frozenset[str] = frozenset(
    str(t.__struct_config__.tag) for t in get_args(AnyEventData))

# --- who appends to a session ----------------------------------------------------------------

# What others than the worker running a session append to it: clients (a message, a client
# tool's result, an interrupt, archiving) and approvers (a decision). A worker whose append
# races one of these takes it in (engine/runtime/turns.py); any other event there means another
# worker owns the session now.
FROM_OUTSIDE: frozenset[str] = frozenset({
    "user_message", "tool_result", "session_interrupted", "approval_resolved", SESSION_ARCHIVED})
# Of those, what a worker must react to (engine/projections/session_runs.py marks the session
# wanted): all but archiving, after which a session has no more turns.
WAKES_A_WORKER: frozenset[str] = FROM_OUTSIDE - {SESSION_ARCHIVED}

_encoder = msgspec.json.Encoder()
_data_decoder: msgspec.json.Decoder[AnyEventData] = msgspec.json.Decoder(AnyEventData)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def new_event(
    data: EventData,
    *,
    id: uuid.UUID | None = None,
    meta: EventMeta | None = None,
) -> NewEvent:
    tag = type(data).__struct_config__.tag
    assert isinstance(tag, str)
    return NewEvent(
        type=tag,
        data=_encoder.encode(data),
        id=id,
        meta=_encoder.encode(meta) if meta is not None else b"{}",
    )


_meta_decoder = msgspec.json.Decoder(EventMeta)


def decode_meta(event: Event) -> EventMeta:
    """Who appended a stored event, and in which request."""
    return _meta_decoder.decode(event.meta)


def decode_data(event: Event) -> AnyEventData:
    """Decode a stored event's data into its typed Struct (for folding, not for the wire)."""
    return _data_decoder.decode(event.data)


def decoded(event: Event, types: frozenset[str]) -> AnyEventData | None:
    """The event's data if its type is one of ``types`` and it decodes; None otherwise. The
    store takes whatever its callers append, so a fold skips (and logs) what it cannot read
    rather than stop on it: such an event only moves its stream's seq."""
    if event.type not in types:
        return None
    try:
        return decode_data(event)
    except (msgspec.MsgspecError, RecursionError) as exc:  # RecursionError: nested too deep
        _log.warning("events.undecodable", stream_id=event.stream_id, seq=event.seq,
                     type=event.type, error=str(exc))
        return None
