"""The API's answers as typed, frozen dataclasses (one per schema).

Generated from docs/openapi.json (scripts/generate_sdk.py): do not edit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentPage",
    "AgentToken",
    "AgentTokenPage",
    "AgentVersion",
    "AgentVersionPage",
    "AgentView",
    "ApiKey",
    "ApiKeyPage",
    "Approval",
    "ApprovalPage",
    "ApprovalView",
    "AuditEntry",
    "AuditEntryPage",
    "BlockedTask",
    "Board",
    "BoardPage",
    "BoardSnapshot",
    "Budget",
    "BudgetDeleted",
    "BudgetPage",
    "Comment",
    "CommentPage",
    "ContentBlock",
    "ConversationMessage",
    "ConversationToolCall",
    "CurrentTurnView",
    "Deleted",
    "Event",
    "EventAccepted",
    "EventMeta",
    "EventPage",
    "EventsAccepted",
    "Health",
    "Limits",
    "ModelConfig",
    "NothingToInterrupt",
    "OpenMessageView",
    "PeriodStatus",
    "QueuedTurn",
    "QueuedTurnView",
    "QueuedTurns",
    "Readiness",
    "ScriptStep",
    "ScriptedToolCall",
    "Session",
    "SessionStateView",
    "SessionSummary",
    "SessionSummaryPage",
    "StreamToken",
    "Task",
    "TaskPage",
    "Tenant",
    "TenantPage",
    "ToolCallView",
    "ToolSpec",
    "TurnView",
    "Usage",
    "UsageRow",
    "UsageRowPage",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Agent:
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
    created_at: str
    updated_at: str
    broken: str | None = None
    view: AgentView | None = None
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentConfig:
    """AgentConfig"""

    name: str
    model: ModelConfig
    system: str | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    limits: Limits
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentPage:
    """Page[Agent]"""

    data: list[Agent]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentToken:
    """AgentToken"""

    id: str
    agent_id: str
    name: str
    created_at: str
    revoked_at: str | None = None
    token: str | None = None
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentTokenPage:
    """Page[AgentToken]"""

    data: list[AgentToken]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentVersion:
    """A version of the agent's config; ``config`` is null (and ``broken`` says why) when its
    stored event cannot be read as a config."""

    version: int
    config: AgentConfig | None
    created_at: str
    broken: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentVersionPage:
    """Page[AgentVersion]"""

    data: list[AgentVersion]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentView:
    """The agent at work, from the ``agents`` view. ``status`` is computed when read: busy while
    one of its sessions runs or waits on a client or a human, offline when its runtime sent
    heartbeats and the last is older than SPOOL_AGENT_OFFLINE_SECONDS, idle otherwise."""

    status: Literal["busy", "idle", "offline"]
    version: int
    archived: bool
    last_heartbeat_at: str | None
    active_sessions: int
    sessions: int
    turns: int
    tokens: int
    usd: float
    cost_nanos: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """ApiKey"""

    id: str
    tenant_id: str
    name: str
    role: Literal["member", "owner", "viewer"]
    created_at: str
    revoked_at: str | None = None
    key: str | None = None
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKeyPage:
    """Page[ApiKey]"""

    data: list[ApiKey]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Approval:
    """Approval"""

    id: str
    session_id: str
    turn_id: str
    tool_use_id: str
    tool_name: str
    input: dict[str, Any]
    status: Literal["approved", "cancelled", "denied", "pending"]
    reason: str | None
    requested_at: str
    resolved_at: str | None
    resolved_by: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalPage:
    """Page[Approval]"""

    data: list[Approval]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalView:
    """ApprovalView"""

    approval_id: str
    tool_use_id: str
    decision: Literal["approve", "deny", "pending"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """AuditEntry"""

    position: int
    at: str
    actor: str | None
    request_id: str | None
    action: str
    stream_type: str
    stream_id: str
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntryPage:
    """Page[AuditEntry]"""

    data: list[AuditEntry]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class BlockedTask:
    """BlockedTask"""

    task_id: str
    blocked_by: list[str]
    resume_status: Literal["blocked", "done", "in_progress", "inbox", "review"] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Board:
    """Board"""

    id: str
    name: str
    description: str | None
    created_at: str
    updated_at: str
    last_seq: int
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class BoardPage:
    """Page[Board]"""

    data: list[Board]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class BoardSnapshot:
    """A board as the view held it at ``position``: every count is exact; each status lists at most
    ``limit`` tasks, most urgent first, then oldest first."""

    board: Board
    position: int
    counts: dict[str, int]
    tasks: dict[str, list[Task]]
    blocked: list[BlockedTask]


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """Budget"""

    scope: str
    limits: dict[str, PeriodStatus]
    updated_at: str
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetDeleted:
    """The scope has no budget any more."""

    scope: str
    deleted: bool
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetPage:
    """Page[Budget]"""

    data: list[Budget]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Comment:
    """Comment"""

    id: str
    task_id: str
    body: str
    author: str | None
    created_at: str
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class CommentPage:
    """Page[Comment]"""

    data: list[Comment]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ContentBlock:
    """ContentBlock"""

    type: Literal["text"]
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationMessage:
    """One entry of the conversation a model call would be sent now (before each adapter's repairs:
    see the adapters)."""

    role: Literal["assistant", "tool", "user"]
    text: str
    tool_calls: list[ConversationToolCall]
    tool_use_id: str | None
    is_error: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationToolCall:
    """ConversationToolCall"""

    tool_use_id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class CurrentTurnView:
    """The running turn. ``tool_calls``: its calls without a result yet; ``pending_tool_use_ids``:
    those a client may answer now (``POST .../tool_results``); ``waiting_on_approvals``:
    approval ids a human has to decide."""

    number: int | None
    turn_id: str
    interrupted: bool
    model_calls: int
    tokens: int
    last_stop: Literal["end_turn", "error", "interrupted", "max_tokens", "tool_use"] | None
    open_message: OpenMessageView | None
    tool_calls: list[ToolCallView]
    pending_tool_use_ids: list[str]
    approvals: list[ApprovalView]
    waiting_on_approvals: list[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Deleted:
    """Deleted"""

    id: str
    deleted: bool = True
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """A stored event: the envelope clients receive."""

    id: str
    stream_id: str
    stream_type: str
    seq: int
    position: int
    type: str
    data: dict[str, Any]
    meta: EventMeta
    created_at: str


@dataclass(frozen=True, kw_only=True, slots=True)
class EventAccepted:
    """The event the request appended; what it sets off follows on the session's stream."""

    event: Event
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventMeta:
    """EventMeta"""

    actor: str | None = None
    request_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventPage:
    """Page[Event]"""

    data: list[Event]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventsAccepted:
    """The events the request appended, in log order."""

    events: list[Event]
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Health:
    """Health"""

    status: Literal["ok"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Limits"""

    max_turns: int | None = None
    max_tokens_per_turn: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """ModelConfig"""

    adapter: Literal["anthropic", "openai", "scripted"] = 'scripted'
    name: str = 'scripted'
    params: dict[str, Any] = field(default_factory=dict)
    script: list[ScriptStep] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class NothingToInterrupt:
    """No turn was running or queued: nothing was appended (an interrupt is idempotent)."""

    event: None
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenMessageView:
    """A model call started and not stopped as of ``at``: still streaming, or cut (its worker died;
    the next one closes it as interrupted and asks again)."""

    message_id: str
    model: str
    text: str
    tool_use_ids: list[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class PeriodStatus:
    """PeriodStatus"""

    tokens: int | None
    usd: float | None
    spent_tokens: int
    spent_usd: float
    remaining_tokens: int | None
    remaining_usd: float | None
    exceeded: bool
    resets_at: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedTurn:
    """QueuedTurn"""

    turn_id: str
    content: list[ContentBlock]


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedTurnView:
    """QueuedTurnView"""

    turn_id: str
    text: str
    interrupted: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedTurns:
    """The session's queued turns, oldest first (not paged)."""

    data: list[QueuedTurn]


@dataclass(frozen=True, kw_only=True, slots=True)
class Readiness:
    """``checks``: ``postgres`` and ``redis``, each ``ok`` or what is wrong."""

    status: Literal["degraded", "ok", "unavailable"]
    checks: dict[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class ScriptStep:
    """One reply of the ``scripted`` adapter: text (streamed word by word), tool calls, or an error
    the model call fails with. Usage defaults to word counts."""

    text: str = ''
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    delay: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ScriptedToolCall:
    """ScriptedToolCall"""

    name: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    """Session"""

    id: str
    status: Literal["archived", "idle", "requires_action", "running"]
    agent_id: str | None
    agent_version: int | None
    title: str | None
    metadata: dict[str, str]
    usage: Usage
    current_turn_id: str | None
    queued_turn_ids: list[str]
    pending_tool_use_ids: list[str]
    created_at: str
    updated_at: str
    last_seq: int
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionStateView:
    """The session folded up to event ``at`` (``last_seq`` is its last event now)."""

    session_id: str
    at: int
    at_time: str
    last_seq: int
    status: Literal["archived", "idle", "requires_action", "running"]
    agent_id: str | None
    agent_version: int | None
    title: str | None
    turns: list[TurnView]
    current: CurrentTurnView | None
    queue: list[QueuedTurnView]
    usage: Usage
    cost_nanos: int
    model_calls: int
    conversation: list[ConversationMessage]


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSummary:
    """SessionSummary"""

    id: str
    agent_id: str | None
    agent_version: int | None
    title: str | None
    status: Literal["archived", "idle", "requires_action", "running"]
    turns: int
    tokens: int
    usd: float
    cost_nanos: int
    created_at: str
    updated_at: str
    last_position: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSummaryPage:
    """Page[SessionSummary]"""

    data: list[SessionSummary]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamToken:
    """StreamToken"""

    token: str
    expires_at: str
    session_id: str | None
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Task:
    """Task"""

    id: str
    board_id: str
    title: str
    description: str | None
    status: Literal["blocked", "done", "in_progress", "inbox", "review"]
    resume_status: Literal["blocked", "done", "in_progress", "inbox", "review"] | None
    priority: Literal["high", "low", "normal", "urgent"]
    assignee_id: str | None
    due_at: str | None
    dependencies: list[str]
    created_at: str
    updated_at: str
    last_seq: int
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskPage:
    """Page[Task]"""

    data: list[Task]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Tenant:
    """Tenant"""

    id: str
    name: str
    status: Literal["active", "suspended"]
    created_at: str
    updated_at: str
    # The Spool-Position of the write that answered (None: none was made).
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantPage:
    """Page[Tenant]"""

    data: list[Tenant]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallView:
    """ToolCallView"""

    tool_use_id: str
    name: str
    input: dict[str, Any]
    executor: Literal["client", "server"]
    approval: Literal["approve", "deny", "pending"] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec:
    """ToolSpec"""

    name: str
    description: str = ''
    input_schema: dict[str, Any] = field(default_factory=dict)
    executor: Literal["client", "server"] = 'client'
    requires_approval: bool = False
    timeout_seconds: float = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnView:
    """A turn of the session as of ``at``: ``queued``, ``running`` (waiting on a client or a human
    included), or how it ended. ``tokens`` is input + output."""

    number: int
    turn_id: str
    status: Literal["budget_exceeded", "cancelled", "completed", "failed", "queued", "running"]
    text: str
    model_calls: int
    tokens: int
    usage: Usage
    cost_nanos: int
    error: str | None
    submitted_seq: int
    started_seq: int | None
    ended_seq: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Tokens as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageRow:
    """UsageRow"""

    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    tokens: int
    usd: float


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageRowPage:
    """Page[UsageRow]"""

    data: list[UsageRow]
    has_more: bool
    next_cursor: str | None
