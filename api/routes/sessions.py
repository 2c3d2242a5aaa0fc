"""/v1/sessions: create, list (session summaries, from the agents view), get, the state at any
event (replay debugging), submit a turn (messages), and the event log page."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of, writer
from api.handlers import archived, fetched, listed, listed_by_seq
from api.io import (
    NUL_FREE,
    idempotency_key,
    json_response,
    position_header,
    query_int,
    read_json,
)
from api.operation import LIMIT, Operation, id_q, links_to, q, route, seq_after, view_page
from api.query import query_choice, query_id, query_text
from api.responses import EventAccepted, EventsAccepted
from api.state import engine_of
from engine.debug.state_view import SessionStateView
from engine.domain.sessions import ClientToolResult, QueuedTurn, Session, SubmitMode
from engine.events import ContentBlock, Event
from engine.pages import Page
from engine.projections.summaries import STATUSES as SESSION_STATUSES
from engine.projections.summaries import SessionSummary

_MODES: tuple[SubmitMode, ...] = ("enqueue", "interrupt")
_Text = Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]


class SessionIn(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: _Text | None = None
    title: _Text | None = None
    metadata: Annotated[dict[_Text, Annotated[str, NUL_FREE, msgspec.Meta(max_length=2000)]],
                        msgspec.Meta(max_length=32)] = {}


class TextBlockIn(msgspec.Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    """engine.events.ContentBlock as a request accepts it: text without NUL."""

    text: Annotated[str, NUL_FREE]


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    content: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1)] | Annotated[
        list[TextBlockIn], msgspec.Meta(min_length=1, max_length=100)
    ]

    def blocks(self) -> list[ContentBlock]:
        return _blocks(self.content)


def _blocks(content: str | list[TextBlockIn]) -> list[ContentBlock]:
    if isinstance(content, str):
        return [ContentBlock(text=content)]
    return [ContentBlock(text=block.text) for block in content]


class NothingToInterrupt(msgspec.Struct):
    """No turn was running or queued: nothing was appended (an interrupt is idempotent)."""

    event: None


class QueuedTurns(msgspec.Struct):
    """The session's queued turns, oldest first (not paged)."""

    data: list[QueuedTurn]


async def create_session(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, SessionIn)
    session, event = await engine_of(request).sessions.create(
        tenant_id,
        agent_id=body.agent_id,
        agent_version=query_int(request, "agent_version", None, minimum=1),
        title=body.title,
        metadata=body.metadata,
        meta=meta,
        idempotency_key=idempotency_key(request),
    )
    return json_response(session, 201, position_header(event))


async def list_sessions(request: Request) -> Response:
    return await listed(request, "ses", engine_of(request).session_summaries.list,
                        _session_filters)


def _session_filters(request: Request) -> dict[str, Any]:
    return {"agent_id": query_id(request, "agent_id", "agt"),
            "status": query_text(request, "status")}


async def get_session(request: Request) -> Response:
    return await fetched(request, "session_id", engine_of(request).sessions.get)


async def get_state(request: Request) -> Response:
    """The session's folded state as of event ``at`` (default: its last), for debugging."""
    _, tenant_id = await tenant_of(request, "viewer")
    view = await engine_of(request).session_state(
        tenant_id, request.path_params["session_id"], query_int(request, "at", None, minimum=1))
    return json_response(view)


async def submit_message(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    mode = query_choice(request, "mode", _MODES)
    body = await read_json(request, MessageIn)
    event, allowance = await engine_of(request).sessions.submit_message(
        tenant_id, request.path_params["session_id"], body.blocks(), mode=mode,
        meta=meta, idempotency_key=idempotency_key(request),
    )
    headers = position_header(event)
    if allowance is not None:  # a limit is set: what is left of it
        headers.update(allowance.headers())
    return json_response(EventAccepted(event), 202, headers)


async def interrupt(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    event = await engine_of(request).sessions.interrupt(
        tenant_id, request.path_params["session_id"], meta=meta)
    if event is None:  # nothing running: nothing to do (an interrupt is idempotent)
        return json_response(NothingToInterrupt(None))
    return json_response(EventAccepted(event), 202, position_header(event))


async def list_queue(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    queued = await engine_of(request).sessions.queue(
        tenant_id, request.path_params["session_id"])
    return json_response(QueuedTurns(queued))


async def remove_queued(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    event = await engine_of(request).sessions.remove_queued(
        tenant_id, request.path_params["session_id"], request.path_params["turn_id"],
        meta=meta)
    return json_response(EventAccepted(event), 202, position_header(event))


async def archive(request: Request) -> Response:
    return await archived(request, "session_id", engine_of(request).sessions.archive)


class ToolResultIn(msgspec.Struct, forbid_unknown_fields=True):
    tool_use_id: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
    content: Annotated[str, NUL_FREE] | Annotated[
        list[TextBlockIn], msgspec.Meta(max_length=100)]
    is_error: bool = False


class ToolResultsIn(msgspec.Struct, forbid_unknown_fields=True):
    results: Annotated[list[ToolResultIn], msgspec.Meta(min_length=1, max_length=128)]


async def submit_tool_results(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, ToolResultsIn)
    results = [ClientToolResult(r.tool_use_id, _blocks(r.content), r.is_error)
               for r in body.results]
    events = await engine_of(request).sessions.submit_tool_results(
        tenant_id, request.path_params["session_id"], results,
        meta=meta, idempotency_key=idempotency_key(request),
    )
    return json_response(EventsAccepted(events), 202, position_header(events[-1]))


async def list_events(request: Request) -> Response:
    return await listed_by_seq(request, "session_id", engine_of(request).sessions.events)


routes = [
    route("POST", "/v1/sessions", create_session, Operation(
        "Create a session", Session, 201, SessionIn, auth="member", idempotent=True,
        position="always",
        query=(q("agent_version", "Pin this version of the agent (default: its current one).",
                 "integer", minimum=1),),
        description="A session with an agent pins the agent's version; 409 if the agent is "
        "archived.",
        links=links_to("session_id", GetSession="get_session", GetState="get_state",
                       SubmitMessage="submit_message", Interrupt="interrupt",
                       Archive="archive", ListQueue="list_queue",
                       ListEvents="sessions_list_events", Stream="session_stream",
                       SubmitToolResults="submit_tool_results"))),
    route("GET", "/v1/sessions", list_sessions, Operation(
        "List sessions (summaries, oldest first)", Page[SessionSummary],
        query=(id_q("agent_id", "agt", "Only this agent's sessions."),
               q("status", "Only sessions in this status.",
                 enum=list(SESSION_STATUSES)), *view_page("ses")))),
    route("GET", "/v1/sessions/{session_id}", get_session, Operation("Get a session", Session)),
    route("GET", "/v1/sessions/{session_id}/state", get_state, Operation(
        "The session's state as of an event (replay debugging)", SessionStateView,
        query=(q("at", "The state right after the event with this seq (absent: the last "
                 "event). 400 past the session's last event.", "integer", minimum=1),),
        description="The session folded from its log up to `at`, as the runtime folds it: "
        "status, every turn so far (model calls, tokens, spend), the running turn (the "
        "message being streamed, tool calls without a result, approvals, an interrupt), the "
        "queue, usage, and the conversation a model call would be sent.")),
    route("POST", "/v1/sessions/{session_id}/messages", submit_message, Operation(
        "Submit a turn", EventAccepted, 202, MessageIn, auth="member", idempotent=True,
        position="always", errors=(402,), rate_limited=True,
        query=(q("mode", "While a turn runs: queue this one after it, or interrupt it. "
                 "Without a mode that is 409.", enum=["enqueue", "interrupt"]),),
        description="Appends `user_message`; in a session with an agent a worker runs the "
        "turn and streams the reply on the session's stream. 402 when a budget the session "
        "falls under is spent; 429 past the tenant's `SPOOL_TURN_RATE_LIMIT` messages a "
        "minute (shared by every process; `X-RateLimit-*` headers say how many are left).",
        links={"RemoveQueued": ("remove_queued", {
                   "session_id": "$request.path.session_id",
                   "turn_id": "$response.body#/event/data/turn_id"}),
               "GetSession": ("get_session", {"session_id": "$request.path.session_id"})})),
    route("POST", "/v1/sessions/{session_id}/interrupt", interrupt, Operation(
        "Interrupt the running turn", EventAccepted, 202, auth="member", position="always",
        errors=(409,),
        also=((200, NothingToInterrupt, "Nothing was running."),))),
    route("POST", "/v1/sessions/{session_id}/archive", archive, Operation(
        "Archive an idle session", Session, auth="member", position="if_changed",
        errors=(409,), description="No more messages; its stream ends. 409 while a turn runs "
        "or is queued.")),
    route("GET", "/v1/sessions/{session_id}/queue", list_queue, Operation(
        "List the queued turns", QueuedTurns)),
    route("DELETE", "/v1/sessions/{session_id}/queue/{turn_id}", remove_queued, Operation(
        "Remove a queued turn", EventAccepted, 202, auth="member", position="always",
        errors=(409,), description="409 for the turn that is running: interrupt it instead.")),
    route("POST", "/v1/sessions/{session_id}/tool_results", submit_tool_results, Operation(
        "Answer client tool calls", EventsAccepted, 202, ToolResultsIn, auth="member",
        idempotent=True, position="always",
        description="The results of the client-side tool calls a session in "
        "`requires_action` waits for; the turn goes on when every call has its result.")),
    route("GET", "/v1/sessions/{session_id}/events", list_events, Operation(
        "A page of the session's events, by seq", Page[Event],
        query=(LIMIT, seq_after("Events after this seq.")))),
]
