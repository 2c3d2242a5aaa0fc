"""``GET /v1/openapi.json``: the OpenAPI 3.1 document, built from the app's route table, the
msgspec types the routes read and return, and ``OPERATIONS`` below: per route and method, what
the code cannot say (a summary, the body and response types, the query parameters, who may call
it). ``python -m api.openapi`` prints it; ``make openapi`` writes it to ``docs/openapi.json``,
and a test fails when that file, the table or the route table drift apart."""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, get_args

import msgspec
import msgspec.inspect as mi
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.errors import STATUS, ErrorEnvelope
from api.query import MAX_LENGTH, SCOPE_PATTERN, TEXT_PATTERN, id_pattern
from api.routes.agents import TokenIn
from api.routes.api_keys import ApiKeyIn
from api.routes.approvals import DecisionIn
from api.routes.sessions import MessageIn, SessionIn, ToolResultsIn
from api.routes.tenants import TenantIn
from engine.auth.agent_tokens import AgentToken
from engine.auth.stream_tokens import StreamToken, StreamTokenIn
from engine.auth.tenants import ApiKey, Tenant
from engine.debug.state_view import SessionStateView
from engine.domain.agents import Agent, AgentPatch, AgentVersion, HeartbeatIn
from engine.domain.approvals import STATUSES as APPROVAL_STATUSES
from engine.domain.approvals import Approval
from engine.domain.audit import AuditEntry
from engine.domain.boards import Board, BoardIn, BoardPatch, Deleted
from engine.domain.budgets import GROUPS, Budget, BudgetIn, UsageRow
from engine.domain.sessions import QueuedTurn, Session
from engine.domain.tasks import BoardSnapshot, Comment, CommentIn, Task, TaskIn, TaskPatch
from engine.errors import SpoolError
from engine.events import (
    EVENT_TYPES,
    STREAM_TYPES,
    AgentConfig,
    AnyEventData,
    Event,
    EventMeta,
    TaskStatus,
)
from engine.pages import DEFAULT_LIMIT, MAX_LIMIT, Page
from engine.projections.summaries import STATUSES as SESSION_STATUSES
from engine.projections.summaries import SessionSummary

JSON = "application/json"
SSE = "text/event-stream"
PROMETHEUS = CONTENT_TYPE_LATEST
_REF = "#/components/schemas/{name}"


# --- shapes the routes build inline (dicts), named here so the document can describe them -----


class EventAccepted(msgspec.Struct):
    """The event the request appended; what it sets off follows on the session's stream."""

    event: Event


class EventsAccepted(msgspec.Struct):
    """The events the request appended, in log order."""

    events: list[Event]


class NothingToInterrupt(msgspec.Struct):
    """No turn was running or queued: nothing was appended (an interrupt is idempotent)."""

    event: None


class QueuedTurns(msgspec.Struct):
    """The session's queued turns, oldest first (not paged)."""

    data: list[QueuedTurn]


class BudgetDeleted(msgspec.Struct):
    """The scope has no budget any more."""

    scope: str
    deleted: bool


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    """``checks``: ``postgres`` and ``redis``, each ``ok`` or what is wrong."""

    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str]


# --- the per-operation table --------------------------------------------------------------------

Auth = Literal["viewer", "member", "owner", "admin", "runtime"] | None
Shape = Any  # a msgspec-encodable type, or a tuple of them (any one of)


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    where: Literal["query", "header"] = "query"
    required: bool = False
    comma_separated: bool = False  # an array as `a,b` (style form, explode false)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where,
                               "description": self.description, "schema": self.schema}
        if self.required:
            out["required"] = True
        if self.comma_separated:
            out.update(style="form", explode=False)
        return out


INT64_MAX = 2**63 - 1  # what a query integer may be (Postgres' bigint); more is a 400


def q(name: str, description: str, type_: str = "string", **schema: Any) -> Param:
    if type_ == "integer":
        schema.setdefault("maximum", INT64_MAX)
    return Param(name, description, {"type": type_, **schema})


def text_q(name: str, description: str) -> Param:
    """A text parameter as api/query.py's ``query_text`` takes it."""
    return q(name, description, maxLength=MAX_LENGTH, pattern=TEXT_PATTERN)


def id_q(name: str, prefix: str, description: str) -> Param:
    return q(name, description, pattern=id_pattern(prefix))


@dataclass(frozen=True)
class Op:
    """One operation. ``auth``: the least role of the API key it needs (the admin token also
    works, naming the tenant in ``Spool-Tenant``), ``admin`` (the admin token only), ``runtime``
    (an agent runtime token) or None (no authentication). ``position``: the write reports the log
    position it reached in ``Spool-Position`` always, or only when it changed something.
    ``errors``: statuses beyond those every such operation has (see ``_errors``). ``also``: other
    successful answers, ``(status, shape, description)``."""

    summary: str
    response: Shape
    status: int = 200
    body: Any = None
    body_optional: bool = False
    auth: Auth = "viewer"
    query: tuple[Param, ...] = ()
    idempotent: bool = False
    position: Literal["always", "if_changed"] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    media: str = JSON
    also: tuple[tuple[int, Shape, str], ...] = ()
    rate_limited: bool = False  # X-RateLimit-* headers, and 429


LIMIT = q("limit", f"At most this many items (default {DEFAULT_LIMIT}).", "integer",
          minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT)
_AFTER = "The cursor: `next_cursor` of the previous page (absent: the first page)."
MIN_POSITION = q(
    "min_position", "Read your writes: wait (bounded) until the view has applied this log "
    "position, the `Spool-Position` of a write (503 if it does not catch up in time; 400 if "
    "it is past the log's head).",
    "integer", minimum=0)


def page(prefix: str) -> tuple[Param, ...]:
    """``limit`` and ``after`` of a list paged by ids of this prefix."""
    return LIMIT, id_q("after", prefix, _AFTER)


def view_page(prefix: str) -> tuple[Param, ...]:
    """The same, for a list read from a view: with ``min_position``."""
    return *page(prefix), MIN_POSITION


TYPES = Param("types", "Only these event types, comma-separated (e.g. "
              "`task_created,task_updated`); a name that is no event type is 400.",
              {"type": "array", "items": {"type": "string", "enum": sorted(EVENT_TYPES)}},
              comma_separated=True)
STREAM_TYPE = q("stream_type", "Only events of streams of this type.",
                enum=list(STREAM_TYPES))
SSE_AFTER = q("after", "Resume after this id (`Last-Event-ID` wins when both are sent).",
              "integer", minimum=0, default=0)
ACCESS_TOKEN = q(
    "access_token", "A stream token (`sst_...`, from `POST /v1/stream_tokens`) for clients that "
    "cannot send headers (a browser's EventSource); it wins over `Authorization`. API keys are "
    "refused here (401): a URL ends up in logs.")

PATH_PARAMS = {
    "tenant_id": "A tenant id (`ten_...`).",
    "key_id": "An API key id (`key_...`).",
    "agent_id": "An agent id (`agt_...`).",
    "token_id": "An agent runtime token id (`atk_...`).",
    "session_id": "A session id (`ses_...`).",
    "turn_id": "A queued turn's id.",
    "approval_id": "An approval id.",
    "board_id": "A board id (`brd_...`).",
    "task_id": "A task id (`tsk_...`).",
    "scope": "`tenant`, `agent:<agent id>` or `session:<session id>`.",
}

_ULID = "[0-9A-HJKMNP-TV-Z]{26}"
# Path parameters whose form the code checks (400); any other id of the wrong form is a 404.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "scope": {"type": "string", "pattern": f"^(tenant|agent:agt_{_ULID}|session:ses_{_ULID})$"},
}

# The cursor of each list whose `next_cursor` is the last item's id: `?after=` of another
# form is a 400, so the document gives its pattern.
CURSORS = {"/v1/tenants": "ten", "/v1/api_keys": "key", "/v1/agents": "agt",
           "/v1/agents/{agent_id}/tokens": "atk", "/v1/sessions": "ses", "/v1/approvals": "apr",
           "/v1/boards": "brd", "/v1/tasks": "tsk", "/v1/tasks/{task_id}/comments": "cmt"}

# OpenAPI links: what a client (or a stateful fuzzer) may do next with what a response
# returned. Per operation: link name -> (the target's operationId, its parameters).
_ID = "$response.body#/id"
LINKS: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("POST", "/v1/tenants"): {
        "GetTenant": ("get_tenant", {"tenant_id": _ID}),
        "SuspendTenant": ("suspend_tenant", {"tenant_id": _ID}),
        "ResumeTenant": ("resume_tenant", {"tenant_id": _ID})},
    ("POST", "/v1/api_keys"): {"RevokeApiKey": ("revoke_api_key", {"key_id": _ID})},
    ("POST", "/v1/agents"): {
        name: (op_id, {"agent_id": _ID}) for name, op_id in (
            ("GetAgent", "get_agent"), ("UpdateAgent", "update_agent"),
            ("ListVersions", "list_versions"), ("ArchiveAgent", "archive_agent"),
            ("CreateToken", "create_token"), ("ListTokens", "list_tokens"))},
    ("POST", "/v1/agents/{agent_id}/tokens"): {
        "RevokeToken": ("revoke_token", {"agent_id": "$request.path.agent_id",
                                         "token_id": _ID})},
    ("POST", "/v1/sessions"): {
        name: (op_id, {"session_id": _ID}) for name, op_id in (
            ("GetSession", "get_session"), ("GetState", "get_state"),
            ("SubmitMessage", "submit_message"), ("Interrupt", "interrupt"),
            ("Archive", "archive"), ("ListQueue", "list_queue"),
            ("ListEvents", "sessions_list_events"), ("Stream", "session_stream"),
            ("SubmitToolResults", "submit_tool_results"))},
    ("POST", "/v1/sessions/{session_id}/messages"): {
        "RemoveQueued": ("remove_queued", {"session_id": "$request.path.session_id",
                                           "turn_id": "$response.body#/event/data/turn_id"}),
        "GetSession": ("get_session", {"session_id": "$request.path.session_id"})},
    ("POST", "/v1/boards"): {
        name: (op_id, {"board_id": _ID}) for name, op_id in (
            ("GetBoard", "get_board"), ("UpdateBoard", "update_board"),
            ("DeleteBoard", "delete_board"), ("Snapshot", "board_snapshot"))},
    ("POST", "/v1/tasks"): {
        name: (op_id, {"task_id": _ID}) for name, op_id in (
            ("GetTask", "get_task"), ("UpdateTask", "update_task"),
            ("DeleteTask", "delete_task"), ("AddComment", "add_comment"),
            ("ListComments", "list_comments"))},
}

_SSE_TEXT = (
    "Server-sent events: `retry: 2000` first, then frames `id: {id}`, `event: {type}`, "
    "`data: {the event as JSON}` (the `Event` schema). First the stored events after the cursor "
    "(`Last-Event-ID` or `?after=`), then live ones, with no gap and no duplicate at the "
    "hand-over. A `: keepalive` comment goes out after 15 s of silence; a client that falls too "
    "far behind gets a `: cut off` comment and the stream closes: reconnect with "
    "`Last-Event-ID`. A stream whose key is revoked or whose tenant is suspended ends with a "
    "`: closed: <why>` comment. Errors before the stream starts are JSON error envelopes."
)

# One entry per route and method of the app, grouped by resource.
OPERATIONS: dict[tuple[str, str], Op] = {
    # health and this document
    ("GET", "/healthz"): Op("The process is up", Health, auth=None),
    ("GET", "/readyz"): Op(
        "Postgres and Redis are reachable", Readiness, auth=None,
        description="`degraded` without Redis: everything is still served, streams from "
        "Postgres (slower).",
        also=((503, Readiness, "Postgres is unreachable: nothing can be served."),)),
    ("GET", "/metrics"): Op("Prometheus metrics", None, auth=None, media=PROMETHEUS),
    ("GET", "/v1/openapi.json"): Op("This document (OpenAPI 3.1)", None, auth=None),
    # tenants (admin)
    ("POST", "/v1/tenants"): Op("Create a tenant", Tenant, 201, TenantIn, auth="admin"),
    ("GET", "/v1/tenants"): Op("List tenants", Page[Tenant], auth="admin",
                               query=page("ten")),
    ("GET", "/v1/tenants/{tenant_id}"): Op("Get a tenant", Tenant, auth="admin"),
    ("POST", "/v1/tenants/{tenant_id}/suspend"): Op(
        "Suspend a tenant", Tenant, auth="admin",
        description="Its keys get 403 until it is resumed; its open streams are closed "
        "(a `: closed: ...` comment) and its running and queued turns end "
        "`session_done{status: cancelled, error: \"tenant suspended\"}`."),
    ("POST", "/v1/tenants/{tenant_id}/resume"): Op("Resume a tenant", Tenant, auth="admin"),
    # API keys
    ("POST", "/v1/api_keys"): Op(
        "Create an API key", ApiKey, 201, ApiKeyIn, auth="owner",
        description="The plaintext `key` (`spk_...`) is in this response only "
        "(`Cache-Control: no-store`); it is stored as a hash."),
    ("GET", "/v1/api_keys"): Op("List API keys", Page[ApiKey], auth="owner",
                                query=page("key")),
    ("DELETE", "/v1/api_keys/{key_id}"): Op(
        "Revoke an API key", ApiKey, auth="owner",
        description="The key gets 401 from now on, its stream tokens too; the streams it or "
        "its stream tokens opened are closed (a `: closed: ...` comment), in every process."),
    # agents
    ("POST", "/v1/agents"): Op(
        "Create an agent", Agent, 201, AgentConfig, auth="member", idempotent=True,
        position="always", description="`view` is null in write responses."),
    ("GET", "/v1/agents"): Op(
        "List agents, with their view", Page[Agent], query=view_page("agt")),
    ("GET", "/v1/agents/{agent_id}"): Op(
        "Get an agent, with its view", Agent, query=(MIN_POSITION,)),
    ("PATCH", "/v1/agents/{agent_id}"): Op(
        "Update an agent: a new immutable version", Agent, body=AgentPatch, auth="member",
        idempotent=True, position="always", errors=(409,),
        description="Each field given replaces the current one. Sessions keep the version "
        "they pinned."),
    ("GET", "/v1/agents/{agent_id}/versions"): Op(
        "List an agent's versions", Page[AgentVersion],
        query=(LIMIT, q("after", "Versions after this one.", "integer", minimum=0, default=0))),
    ("POST", "/v1/agents/{agent_id}/archive"): Op(
        "Archive an agent", Agent, auth="member", position="if_changed", errors=(409,),
        description="No new session may use it; sessions that pinned it keep running. "
        "Archiving an archived agent changes nothing."),
    ("POST", "/v1/agents/{agent_id}/tokens"): Op(
        "Create an agent runtime token", AgentToken, 201, TokenIn, body_optional=True,
        auth="owner", errors=(409,),
        description="The plaintext `token` (`spt_...`) is in this response only. It is good "
        "for one thing: the agent's heartbeats. 409 for an archived agent."),
    ("GET", "/v1/agents/{agent_id}/tokens"): Op(
        "List an agent's runtime tokens", Page[AgentToken], auth="owner",
        query=page("atk")),
    ("DELETE", "/v1/agents/{agent_id}/tokens/{token_id}"): Op(
        "Revoke an agent runtime token", AgentToken, auth="owner"),
    ("POST", "/v1/agents/{agent_id}/heartbeat"): Op(
        "Report that the agent's runtime is alive", EventAccepted, 202, HeartbeatIn,
        body_optional=True, auth="runtime", position="always", errors=(409,),
        description="Appends `agent_heartbeat`. 409 for an archived agent; 403 with another "
        "agent's token or an API key."),
    # sessions
    ("POST", "/v1/sessions"): Op(
        "Create a session", Session, 201, SessionIn, auth="member", idempotent=True,
        position="always",
        query=(q("agent_version", "Pin this version of the agent (default: its current one).",
                 "integer", minimum=1),),
        description="A session with an agent pins the agent's version; 409 if the agent is "
        "archived."),
    ("GET", "/v1/sessions"): Op(
        "List sessions (summaries, oldest first)", Page[SessionSummary],
        query=(id_q("agent_id", "agt", "Only this agent's sessions."),
               q("status", "Only sessions in this status.",
                 enum=list(SESSION_STATUSES)), *view_page("ses"))),
    ("GET", "/v1/sessions/{session_id}"): Op("Get a session", Session),
    ("GET", "/v1/sessions/{session_id}/state"): Op(
        "The session's state as of an event (replay debugging)", SessionStateView,
        query=(q("at", "The state right after the event with this seq (absent: the last "
                 "event). 400 past the session's last event.", "integer", minimum=1),),
        description="The session folded from its log up to `at`, as the runtime folds it: "
        "status, every turn so far (model calls, tokens, spend), the running turn (the "
        "message being streamed, tool calls without a result, approvals, an interrupt), the "
        "queue, usage, and the conversation a model call would be sent."),
    ("POST", "/v1/sessions/{session_id}/messages"): Op(
        "Submit a turn", EventAccepted, 202, MessageIn, auth="member", idempotent=True,
        position="always", errors=(402,), rate_limited=True,
        query=(q("mode", "While a turn runs: queue this one after it, or interrupt it. "
                 "Without a mode that is 409.", enum=["enqueue", "interrupt"]),),
        description="Appends `user_message`; in a session with an agent a worker runs the "
        "turn and streams the reply on the session's stream. 402 when a budget the session "
        "falls under is spent; 429 past the tenant's `SPOOL_TURN_RATE_LIMIT` messages a "
        "minute (shared by every process; `X-RateLimit-*` headers say how many are left)."),
    ("POST", "/v1/sessions/{session_id}/interrupt"): Op(
        "Interrupt the running turn", EventAccepted, 202, auth="member", position="always",
        errors=(409,),
        also=((200, NothingToInterrupt, "Nothing was running."),)),
    ("POST", "/v1/sessions/{session_id}/archive"): Op(
        "Archive an idle session", Session, auth="member", position="if_changed",
        errors=(409,), description="No more messages; its stream ends. 409 while a turn runs "
        "or is queued."),
    ("GET", "/v1/sessions/{session_id}/queue"): Op("List the queued turns", QueuedTurns),
    ("DELETE", "/v1/sessions/{session_id}/queue/{turn_id}"): Op(
        "Remove a queued turn", EventAccepted, 202, auth="member", position="always",
        errors=(409,), description="409 for the turn that is running: interrupt it instead."),
    ("POST", "/v1/sessions/{session_id}/tool_results"): Op(
        "Answer client tool calls", EventsAccepted, 202, ToolResultsIn, auth="member",
        idempotent=True, position="always",
        description="The results of the client-side tool calls a session in "
        "`requires_action` waits for; the turn goes on when every call has its result."),
    ("GET", "/v1/sessions/{session_id}/events"): Op(
        "A page of the session's events, by seq", Page[Event],
        query=(LIMIT, q("after", "Events after this seq.", "integer", minimum=0, default=0))),
    ("GET", "/v1/sessions/{session_id}/stream"): Op(
        "The session's events, live (SSE; ids are seq)", None, media=SSE,
        query=(SSE_AFTER, ACCESS_TOKEN),
        errors=(409,), description=_SSE_TEXT + " An archived session's stream ends after "
        "`session_archived`; resuming after it is 409."),
    # approvals
    ("GET", "/v1/approvals"): Op(
        "List approvals", Page[Approval],
        query=(q("status", "Only approvals in this status.",
                 enum=list(APPROVAL_STATUSES)),
               id_q("session_id", "ses", "Only this session's approvals."),
               *page("apr"))),
    ("GET", "/v1/approvals/{approval_id}"): Op("Get an approval", Approval),
    ("POST", "/v1/approvals/{approval_id}"): Op(
        "Approve or deny a tool call", EventAccepted, 202, DecisionIn, auth="member",
        idempotent=True, position="always",
        description="409 if the approval is not pending. A denied call is answered with an "
        "error the model sees."),
    # the tenant's log and audit trail
    ("GET", "/v1/events"): Op(
        "A page of the tenant's log, by position", Page[Event],
        query=(LIMIT, q("after", "Events after this position.", "integer", minimum=0,
                        default=0), TYPES, STREAM_TYPE)),
    ("GET", "/v1/events/stream"): Op(
        "The tenant's events, live (SSE; ids are positions)", None, media=SSE,
        query=(SSE_AFTER, TYPES, STREAM_TYPE, ACCESS_TOKEN), description=_SSE_TEXT),
    ("POST", "/v1/stream_tokens"): Op(
        "Create a stream token for EventSource", StreamToken, 201, StreamTokenIn,
        body_optional=True,
        description="A short-lived token (`ttl_seconds`, default 300, at most 3600) to open "
        "SSE streams with `?access_token=`: the tenant's, or only `session_id`'s. Shown once "
        "(`Cache-Control: no-store`); it dies with the API key that asked for it. Once "
        "expired it still resumes a stream (a reconnect with `Last-Event-ID`, as EventSource "
        "sends) for `SPOOL_STREAM_TOKEN_RESUME_SECONDS` more (a day by default)."),
    ("GET", "/v1/audit"): Op(
        "Who did what, from the log", Page[AuditEntry],
        query=(LIMIT, q("after", "Entries after this position.", "integer", minimum=0,
                        default=0), text_q("actor", "Only this actor's actions.")),
        description="Each event's actor, request id and action, without a model's streamed "
        "output."),
    # boards
    ("POST", "/v1/boards"): Op(
        "Create a board", Board, 201, BoardIn, auth="member", idempotent=True,
        position="always"),
    ("GET", "/v1/boards"): Op("List boards", Page[Board], query=view_page("brd")),
    ("GET", "/v1/boards/{board_id}"): Op("Get a board", Board),
    ("PATCH", "/v1/boards/{board_id}"): Op(
        "Update a board", Board, body=BoardPatch, auth="member", idempotent=True,
        position="if_changed"),
    ("DELETE", "/v1/boards/{board_id}"): Op(
        "Delete a board and its tasks", Deleted, auth="member", position="always"),
    ("GET", "/v1/boards/{board_id}/snapshot"): Op(
        "The board's tasks by status, with counts and what blocks them", BoardSnapshot,
        query=(q("limit", "At most this many tasks per status.", "integer", minimum=1,
                 maximum=MAX_LIMIT, default=100), MIN_POSITION)),
    # tasks
    ("POST", "/v1/tasks"): Op(
        "Create a task", Task, 201, TaskIn, auth="member", idempotent=True, position="always",
        description="Unknown board, assignee or dependency: 404 naming the "
        "field; a dependency cycle: 400. A task is `blocked` while a dependency is not done."),
    ("GET", "/v1/tasks"): Op(
        "List tasks", Page[Task],
        query=(q("status", "Only tasks in this status.",
                 enum=list(get_args(TaskStatus))),
               id_q("assignee_id", "agt", "Only tasks assigned to this agent."),
               id_q("board_id", "brd", "Only this board's tasks."), *view_page("tsk"))),
    ("GET", "/v1/tasks/{task_id}"): Op("Get a task", Task),
    ("PATCH", "/v1/tasks/{task_id}"): Op(
        "Update a task", Task, body=TaskPatch, auth="member", idempotent=True,
        position="if_changed", description="Each field given replaces the current one."),
    ("DELETE", "/v1/tasks/{task_id}"): Op("Delete a task", Deleted, auth="member",
                                          position="always"),
    ("POST", "/v1/tasks/{task_id}/comments"): Op(
        "Comment on a task", Comment, 201, CommentIn, auth="member", idempotent=True,
        position="always"),
    ("GET", "/v1/tasks/{task_id}/comments"): Op("List a task's comments", Page[Comment],
                                                query=page("cmt")),
    # budgets and usage
    ("GET", "/v1/budgets"): Op(
        "List budgets, with what is spent", Page[Budget],
        query=(LIMIT, q("after", _AFTER, pattern=SCOPE_PATTERN), MIN_POSITION)),
    ("PUT", "/v1/budgets/{scope}"): Op(
        "Set a scope's limits, whole", (Budget, BudgetDeleted), body=BudgetIn, auth="owner",
        position="always", description="`{\"limits\": {}}` removes the budget. Days and "
        "months are UTC."),
    ("GET", "/v1/budgets/{scope}"): Op("Get a scope's budget", Budget, query=(MIN_POSITION,)),
    ("DELETE", "/v1/budgets/{scope}"): Op("Remove a scope's budget", BudgetDeleted,
                                          auth="owner", position="always"),
    ("GET", "/v1/usage"): Op(
        "Spend, grouped", Page[UsageRow],
        query=(q("group_by", "One row per key (absent: one `total` row).",
                 enum=list(GROUPS)),
               q("from", "From this UTC day on.", format="date"),
               q("to", "Before this UTC day (excluded).", format="date"),
               id_q("agent_id", "agt", "Only this agent's spend."),
               id_q("session_id", "ses", "Only this session's spend."),
               LIMIT, text_q("after", _AFTER), MIN_POSITION)),
}

TAGS = {
    "health": "Liveness, readiness, metrics and this document (no authentication).",
    "tenants": "Tenants (the admin token only).",
    "api_keys": "API keys of a tenant (owners).",
    "agents": "Agents, their immutable versions, runtime tokens and heartbeats.",
    "sessions": "Sessions, turns, and their event logs and streams.",
    "approvals": "Tool calls waiting for a human.",
    "events": "The tenant's log, its live stream, and the audit trail.",
    "boards": "Boards and their snapshots.",
    "tasks": "Tasks, their dependencies and comments.",
    "budgets": "Budgets per tenant, agent and session, and usage.",
}
_TAG_OF = {"healthz": "health", "readyz": "health", "metrics": "health",
           "openapi.json": "health", "audit": "events", "usage": "budgets",
           "stream_tokens": "events"}

_ERRORS: dict[int, tuple[str, str]] = {  # status: (component name, description)
    400: ("BadRequest", "`invalid_request`: a bad query parameter or cursor, malformed JSON, or "
          "input the types cannot judge (a duplicate, a cycle); `details.field` names it. The "
          "admin token without `Spool-Tenant` is 400 too."),
    401: ("Unauthorized", "`unauthorized`: no credentials, or not valid ones."),
    402: ("BudgetExceeded", "`budget_exceeded`: a budget is spent (`details`: `scope`, "
          "`period`, `limit`, `spent`)."),
    403: ("Forbidden", "`forbidden`: the credentials lack the role, the tenant is suspended, "
          "or an agent runtime token is used for anything but its heartbeat."),
    404: ("NotFound", "`not_found`: no such resource in this tenant (or, for the admin token, "
          "no such tenant as `Spool-Tenant` names)."),
    409: ("Conflict", "`conflict`: the resource's state does not allow it, or the "
          "`Idempotency-Key` was used for another request."),
    413: ("PayloadTooLarge", "`invalid_request`: the body is over `SPOOL_MAX_BODY_BYTES`."),
    415: ("UnsupportedMediaType", "`invalid_request`: the body is not `application/json`."),
    422: ("UnprocessableEntity", "`invalid_request`: the body does not fit the schema "
          "(`details.field` names the field path, e.g. `content[0].text`)."),
    500: ("InternalError", "`internal_error`: the cause is in the server's log."),
    429: ("RateLimited", "`rate_limited`: the tenant submitted more messages this minute than "
          "`SPOOL_TURN_RATE_LIMIT` allows. Retry after `Retry-After` seconds."),
    503: ("Unavailable", "`unavailable`: Postgres is unreachable, or a view did not catch up "
          "with `min_position` in time. Retry after `Retry-After` seconds."),
}

_SECURITY = {
    "apiKey": "An API key, `spk_...`: `Authorization: Bearer spk_...`. Roles: `owner`, "
              "`member`, `viewer`; each operation names the least role it needs.",
    "adminToken": "The admin token (`SPOOL_ADMIN_TOKEN`, or the one generated and printed on "
                  "the first start). On tenant routes it names the tenant in `Spool-Tenant`.",
    "agentToken": "An agent runtime token, `spt_...`: good only for its agent's heartbeat.",
}
# For SSE only, in the URL (EventSource cannot send headers).
_STREAM_TOKEN = {"type": "apiKey", "in": "query", "name": "access_token",
                 "description": "A stream token, `sst_...`, from `POST /v1/stream_tokens`."}

_DESCRIPTION = """\
agentspool: an event-sourced session engine for AI agents.

- Authenticate with `Authorization: Bearer <token>`; each operation says which tokens it takes.
- Every error is `{"error": {"type", "message", "details"}}` (`ErrorEnvelope`); bad input is \
named by its field path in `details.field`.
- Lists take `?limit=` (default 50, max 500) and `?after=`, and answer \
`{"data": [...], "has_more": bool, "next_cursor": str|null}`.
- Writes answer with the log position they reached in `Spool-Position`; reads of views accept \
`?min_position=` with it, to read their own writes.
- Every response carries `X-Request-Id`.
- A query parameter sent empty (`?after=`) is as if it were not sent, on every operation.
"""


# --- building the document ----------------------------------------------------------------------


def operations_of(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Route]:
    """Each (method, path) the route table serves (HEAD, which Starlette adds to GET, aside)."""
    found: dict[tuple[str, str], Route] = {}
    for route in routes:
        if not isinstance(route, Route):
            raise TypeError(f"{route!r}: only plain Routes can be described")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found[(method, route.path)] = route
    return found


def drift(routes: Iterable[BaseRoute]) -> tuple[list[str], list[str]]:
    """(routes OPERATIONS does not describe, operations no route serves), as ``METHOD path``."""
    served = set(operations_of(routes))
    missing = sorted(f"{m} {p}" for m, p in served - OPERATIONS.keys())
    extra = sorted(f"{m} {p}" for m, p in OPERATIONS.keys() - served)
    return missing, extra


def build(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    missing, extra = drift(routes)
    if missing or extra:
        raise ValueError(f"api/openapi.py OPERATIONS does not match the route table: "
                         f"undescribed {missing}, without a route {extra}")
    served = operations_of(routes)
    schemas = _Schemas([*_shapes(OPERATIONS.values()), ErrorEnvelope, EventMeta, AnyEventData])
    paths: dict[str, dict[str, Any]] = {}
    op_ids = _operation_ids(served)
    for (method, path), route in served.items():
        op = OPERATIONS[(method, path)]
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, route, op, op_ids[(method, path)], schemas)
    components = schemas.components()
    return {
        "openapi": "3.1.0",
        "info": {"title": "agentspool", "version": _version(), "description": _DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": components["schemas"],
            "responses": {name: _error_response(status, text, schemas)
                          for status, (name, text) in _ERRORS.items()},
            "parameters": _HEADERS_IN,
            "headers": _HEADERS_OUT,
            "securitySchemes": {
                **{name: {"type": "http", "scheme": "bearer", "description": text}
                   for name, text in _SECURITY.items()},
                "streamToken": _STREAM_TOKEN},
        },
    }


def render(document: dict[str, Any]) -> bytes:
    """The document as committed in docs/openapi.json: 2-space indent, a trailing newline."""
    return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode()


_HEADERS_IN: dict[str, dict[str, Any]] = {
    "SpoolTenant": Param(
        "Spool-Tenant", "The tenant the admin token acts on (required with the admin token, "
        "ignored with an API key).", {"type": "string"}, "header").spec(),
    "IdempotencyKey": Param(
        "Idempotency-Key", "Makes a retry of this request return the first one's result "
        "without writing again.", {"type": "string", "minLength": 1, "maxLength": 255},
        "header").spec(),
    "LastEventId": Param(
        "Last-Event-ID", "Resume after this id (sent by `EventSource` when it reconnects; "
        "empty: as if not sent).",
        {"type": "string", "pattern": "^[0-9]*$", "maxLength": 20}, "header").spec(),
}
_HEADERS_OUT: dict[str, dict[str, Any]] = {
    "X-Request-Id": {"description": "The request's id: an incoming safe `X-Request-Id` echoed, "
                     "else `req_<ULID>`.", "schema": {"type": "string"}},
    "Spool-Position": {"description": "The log position the write reached: pass it as "
                       "`?min_position=` to read it from a view.",
                       "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "Retry-After": {"description": "Seconds to wait before retrying.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Limit": {"description": "Messages the tenant may submit per minute (these "
                          "three only when a limit is set).",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Remaining": {"description": "Of them, left in this minute.",
                              "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-RateLimit-Reset": {"description": "Seconds until the minute starts over.",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}
# What a browser script may read of a cross-origin response (CORS Access-Control-Expose-Headers):
# every response header documented here, so a new one is exposed by being documented.
RESPONSE_HEADERS = tuple(_HEADERS_OUT)
# On rate-limited operations (when a limit is set) and their 429s.
_RATE_LIMIT_HEADERS = {name: {"$ref": f"#/components/headers/{name}"}
                       for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining",
                                    "X-RateLimit-Reset")}


def _clean_descriptions(node: Any) -> Any:
    """Every ``description`` dedented here: msgspec versions pass docstrings on indented or not."""
    if isinstance(node, dict):
        return {key: inspect.cleandoc(value) if key == "description" and isinstance(value, str)
                else _clean_descriptions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_clean_descriptions(value) for value in node]
    return node


class _Schemas:
    """The msgspec types' JSON Schemas as components (``Page[Agent]`` becomes ``AgentPage``)."""

    def __init__(self, types: list[Any]) -> None:
        self._types = types
        found, self._components = msgspec.json.schema_components(types, ref_template=_REF)
        self._renamed = {name: _page_name(name) for name in self._components}
        if len(set(self._renamed.values())) != len(self._renamed):
            raise ValueError("two schemas have one name once renamed")
        self._schemas: dict[str, dict[str, Any]] = {
            _key(t): _rename(s, self._renamed) for t, s in zip(types, found, strict=True)}

    def of(self, shape: Shape) -> dict[str, Any]:
        if isinstance(shape, tuple):
            return {"anyOf": [self.of(one) for one in shape]}
        return self._schemas[_key(shape)]

    def components(self) -> dict[str, dict[str, Any]]:
        schemas = {self._renamed[name]: _rename(schema, self._renamed)
                   for name, schema in self._components.items()}
        # Raw JSON fields, typed: an event's data is one of the event data types, by `type`.
        event = schemas["Event"]["properties"]
        event["data"] = {"$ref": _REF.format(name="EventData"),
                         "description": "The event's data; its shape depends on `type`."}
        event["meta"] = {"$ref": _REF.format(name="EventMeta")}
        error = schemas["ErrorBody"]["properties"]
        error_classes: list[type[SpoolError]] = [SpoolError, *STATUS]
        error["type"]["enum"] = sorted({cls.type for cls in error_classes})
        error["details"]["description"] = (
            "Context for programs: `field` names bad input by its path; a 402 names the "
            "`scope`, `period`, `limit` and `spent`.")
        schemas["Approval"]["properties"]["input"] = {
            "type": "object", "description": "The tool call's input, as the model sent it."}
        # A budget period's limit names tokens, usd or both (engine/domain/budgets.py: else a 400).
        schemas["LimitIn"]["anyOf"] = [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
            for name in ("tokens", "usd")]
        assert "EventData" not in schemas
        schemas["EventData"] = self.of(AnyEventData)
        # Times go out in RFC 3339 with an offset (msgspec says so only of tz-aware types).
        for struct, fields in _datetime_fields(self._types).items():
            for field in fields:
                prop = schemas[struct]["properties"][field]
                for one in prop.get("anyOf", [prop]):
                    if one.get("type") == "string":
                        one["format"] = "date-time"
        return {"schemas": {name: _clean_descriptions(schemas[name]) for name in sorted(schemas)}}


def _datetime_fields(types: list[Any]) -> dict[str, list[str]]:
    """The datetime fields of every Struct the types reach, by Struct name."""
    found: dict[str, list[str]] = {}
    seen: set[type] = set()

    def walk(info: Any) -> None:
        if isinstance(info, mi.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for field in info.fields:
                if any(isinstance(t, mi.DateTimeType) for t in _alternatives(field.type)):
                    found.setdefault(info.cls.__name__, []).append(field.encode_name)
                walk(field.type)
        for t in _alternatives(info):
            if isinstance(t, mi.StructType) and t is not info:
                walk(t)
            elif isinstance(t, mi.CollectionType):
                walk(t.item_type)
            elif isinstance(t, mi.DictType):
                walk(t.value_type)

    for info in mi.multi_type_info(types):
        walk(info)
    return found


def _alternatives(info: Any) -> list[Any]:
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        return [t.type if isinstance(t, mi.Metadata) else t for t in info.types]
    return [info]


def _key(shape: Any) -> str:
    return repr(shape)


def _page_name(name: str) -> str:
    match = re.fullmatch(r"Page_(\w+)_", name)
    return f"{match[1]}Page" if match else name


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (_REF.format(name=names[v.rsplit("/", 1)[1]]) if k == "$ref" else
                    _rename(v, names)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return value


def _shapes(ops: Iterable[Op]) -> list[Any]:
    out: dict[str, Any] = {}
    for op in ops:
        for shape in (op.body, op.response, *(also[1] for also in op.also)):
            for one in shape if isinstance(shape, tuple) else (shape,):
                if one is not None:
                    out.setdefault(_key(one), one)
    return list(out.values())


def _operation_ids(served: dict[tuple[str, str], Route]) -> dict[tuple[str, str], str]:
    """The handler's name, prefixed with its module's where two handlers share a name."""
    names = [route.name for route in served.values()]
    return {key: (route.name if names.count(route.name) == 1 else
                  f"{route.endpoint.__module__.rsplit('.', 1)[1]}_{route.name}")
            for key, route in served.items()}


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    segment = parts[1] if parts[0] == "v1" else parts[0]
    tag = _TAG_OF.get(segment, segment)
    if tag not in TAGS:
        raise ValueError(f"{path}: no tag {tag!r} in TAGS")
    return tag


def _operation(method: str, path: str, route: Route, op: Op, op_id: str,
               schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": [_tag(path)], "summary": op.summary, "operationId": op_id}
    description = _auth_text(op.auth) + (" " + op.description if op.description else "")
    if description.strip():
        out["description"] = description.strip()
    parameters = [
        {"name": name, "in": "path", "required": True, "description": PATH_PARAMS[name],
         "schema": PATH_SCHEMAS.get(name, {"type": "string"})} for name in route.param_convertors]
    if op.auth not in (None, "admin", "runtime"):
        parameters.append({"$ref": "#/components/parameters/SpoolTenant"})
    if op.idempotent:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if op.media == SSE:
        parameters.append({"$ref": "#/components/parameters/LastEventId"})
    parameters += [_empty_allowed(_cursor_pattern(path, param.spec())) for param in op.query]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": not op.body_optional,
                              "content": {JSON: {"schema": schemas.of(op.body)}}}
    responses = {str(op.status): _success(op, op.response, _REASONS[op.status], schemas)}
    for status, shape, text in op.also:
        responses[str(status)] = _success(op, shape, text, schemas, position=False)
    for status in _errors(op, route):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/"
                                                   f"{_ERRORS[status][0]}"})
    links = LINKS.get((method, path))
    if links:
        responses[str(op.status)]["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in links.items()}
    out["responses"] = dict(sorted(responses.items()))
    out["security"] = _security(op.auth) + ([{"streamToken": []}] if op.media == SSE else [])
    return out


def _cursor_pattern(path: str, param: dict[str, Any]) -> dict[str, Any]:
    if param["name"] == "after" and path in CURSORS and param["schema"]["type"] == "string":
        param["schema"] = {**param["schema"], "pattern": f"^{CURSORS[path]}_{_ULID}$"}
    return param


def _empty_allowed(param: dict[str, Any]) -> dict[str, Any]:
    """A query parameter sent empty is as if it were not sent (api/middleware.py): its
    pattern or format admits the empty string too."""
    schema = param["schema"]
    if schema.get("type") != "string":
        return param
    if "pattern" in schema:
        inner = schema["pattern"].removeprefix("^").removesuffix("$")
        schema = {**schema, "pattern": f"^(?:{inner})?$"}
    if "format" in schema:
        schema = {key: value for key, value in schema.items() if key != "format"}
        schema["anyOf"] = [{"format": param["schema"]["format"]}, {"maxLength": 0}]
    return {**param, "schema": schema}


_REASONS = {200: "OK", 201: "Created", 202: "Accepted: appended to the log"}

# In OpenAPI 3.1 the schema of a `text/event-stream` response describes each frame, as its
# fields (the first frame is `retry` alone); `data` is an `Event` as JSON.
_SSE_FRAME: dict[str, Any] = {
    "type": "object",
    "description": "One frame: `id`, `event` and `data` (an `Event` as JSON), or `retry` alone.",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": JSON,
                 "contentSchema": {"$ref": _REF.format(name="Event")}},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def _auth_text(auth: Auth) -> str:
    if auth in ("viewer", "member", "owner"):
        return (f"Role: `{auth}` or above (or the admin token with `Spool-Tenant`).")
    return {"admin": "The admin token only.", "runtime": "One of the agent's runtime tokens.",
            None: "No authentication."}[auth]


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    if auth is None:
        return []
    if auth == "admin":
        return [{"adminToken": []}]
    if auth == "runtime":
        return [{"agentToken": []}]
    return [{"apiKey": []}, {"adminToken": []}]


def _success(op: Op, shape: Shape, text: str, schemas: _Schemas,
             position: bool = True) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if position and op.position is not None:
        headers["Spool-Position"] = {"$ref": "#/components/headers/Spool-Position"}
        if op.position == "if_changed":
            text += " (`Spool-Position` only when something changed)"
    if op.rate_limited:
        headers.update(_RATE_LIMIT_HEADERS)
    if op.media == SSE:
        schema: dict[str, Any] = _SSE_FRAME
    elif op.media == PROMETHEUS:
        schema = {"type": "string", "description": "The Prometheus text exposition format."}
    elif shape is None:
        schema = {"type": "object"}
    else:
        schema = schemas.of(shape)
    return {"description": text, "headers": headers, "content": {op.media: {"schema": schema}}}


def _errors(op: Op, route: Route) -> list[int]:
    """The error statuses of an operation: 500 and 415 (a body that is not JSON) always; with
    authentication 400, 401, 403 and 503 (Postgres); with a body 413, 422; with path parameters
    or Spool-Tenant 404; with an Idempotency-Key 409; and the op's own."""
    statuses = {500, 415, *op.errors}
    if op.auth is not None:
        statuses |= {400, 401, 403, 503}
    if op.body is not None:
        statuses |= {400, 413, 415, 422}
    if route.param_convertors or op.auth in ("viewer", "member", "owner"):  # Spool-Tenant
        statuses.add(404)
    if op.idempotent:
        statuses.add(409)
    if op.rate_limited:
        statuses.add(429)
    return sorted(statuses)


def _error_response(status: int, text: str, schemas: _Schemas) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status == 429:
        headers.update(_RATE_LIMIT_HEADERS)
    return {"description": text, "headers": headers,
            "content": {JSON: {"schema": schemas.of(ErrorEnvelope)}}}


def _version() -> str:
    try:
        return metadata.version("agentspool")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0.0.0"


# --- the route ----------------------------------------------------------------------------------


async def openapi_json(request: Request) -> Response:
    """The document of the app that serves it, built once per app."""
    body: bytes | None = getattr(request.app.state, "openapi", None)
    if body is None:
        body = request.app.state.openapi = render(build(request.app.routes))
    return Response(body, media_type=JSON)


routes = [Route("/v1/openapi.json", openapi_json, methods=["GET"])]


def main() -> None:
    from api.app import ROUTES

    sys.stdout.buffer.write(render(build(ROUTES)))


if __name__ == "__main__":
    main()
