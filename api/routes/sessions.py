"""/v1/sessions: create, list (session summaries, from the agents view), get, the state at any
event (replay debugging), submit a turn (messages), and the event log page."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import event_meta, tenant_of
from api.io import (
    NUL_FREE,
    idempotency_key,
    json_response,
    position_header,
    query_int,
    query_limit,
    read_json,
)
from api.query import query_choice, query_cursor, query_id, query_text
from engine.debug.state_view import state_at
from engine.domain.sessions import ClientToolResult
from engine.errors import NotFound
from engine.events import ContentBlock
from engine.ids import is_id

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



async def create_session(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, SessionIn)
    session, event = await request.app.state.engine.sessions.create(
        tenant_id,
        agent_id=body.agent_id,
        agent_version=query_int(request, "agent_version", None, minimum=1),
        title=body.title,
        metadata=body.metadata,
        meta=event_meta(request, principal),
        idempotency_key=idempotency_key(request),
    )
    return json_response(session, 201, position_header(event.position))


async def list_sessions(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.session_summaries.list(
        tenant_id, agent_id=query_id(request, "agent_id", "agt"),
        status=query_text(request, "status"), after=query_cursor(request, "ses"),
        limit=query_limit(request),
        min_position=query_int(request, "min_position", None),
    )
    return json_response(page)


async def get_session(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    session = await request.app.state.engine.sessions.get(
        tenant_id, request.path_params["session_id"]
    )
    return json_response(session)


async def get_state(request: Request) -> Response:
    """The session's folded state as of event ``at`` (default: its last), for debugging."""
    _, tenant_id = await tenant_of(request, "viewer")
    session_id = request.path_params["session_id"]
    if not is_id(session_id, "ses"):
        raise NotFound(f"session {session_id!r} not found")
    view = await state_at(request.app.state.engine.store, tenant_id, session_id,
                          query_int(request, "at", None, minimum=1))
    return json_response(view)


async def submit_message(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    mode = query_choice(request, "mode", ("enqueue", "interrupt"))
    body = await read_json(request, MessageIn)
    engine, session_id, key = (request.app.state.engine, request.path_params["session_id"],
                               idempotency_key(request))
    first = await engine.sessions.replayed_message(tenant_id, session_id, key)
    if first is not None:  # a retry: its first answer, not counted again
        return json_response({"event": first}, 202, position_header(first.position))
    allowance = await engine.rate_limiter.take(tenant_id)  # 429 past the tenant's limit
    event = await engine.sessions.submit_message(
        tenant_id, session_id, body.blocks(), mode=mode, meta=event_meta(request, principal),
        idempotency_key=key,
    )
    headers = position_header(event.position)
    if allowance is not None:
        headers.update(allowance.headers())
    return json_response({"event": event}, 202, headers)


async def interrupt(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    event = await request.app.state.engine.sessions.interrupt(
        tenant_id, request.path_params["session_id"], meta=event_meta(request, principal)
    )
    if event is None:  # nothing running: nothing to do (an interrupt is idempotent)
        return json_response({"event": None})
    return json_response({"event": event}, 202, position_header(event.position))


async def list_queue(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    queued = await request.app.state.engine.sessions.queue(
        tenant_id, request.path_params["session_id"])
    return json_response({"data": queued})


async def remove_queued(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    event = await request.app.state.engine.sessions.remove_queued(
        tenant_id, request.path_params["session_id"], request.path_params["turn_id"],
        meta=event_meta(request, principal))
    return json_response({"event": event}, 202, position_header(event.position))


async def archive(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    session, event = await request.app.state.engine.sessions.archive(
        tenant_id, request.path_params["session_id"], meta=event_meta(request, principal))
    return json_response(session, 200, position_header(event.position) if event else None)


class ToolResultIn(msgspec.Struct, forbid_unknown_fields=True):
    tool_use_id: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
    content: Annotated[str, NUL_FREE] | Annotated[
        list[TextBlockIn], msgspec.Meta(max_length=100)]
    is_error: bool = False


class ToolResultsIn(msgspec.Struct, forbid_unknown_fields=True):
    results: Annotated[list[ToolResultIn], msgspec.Meta(min_length=1, max_length=128)]


async def submit_tool_results(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, ToolResultsIn)
    results = [ClientToolResult(r.tool_use_id, _blocks(r.content), r.is_error)
               for r in body.results]
    events = await request.app.state.engine.sessions.submit_tool_results(
        tenant_id, request.path_params["session_id"], results,
        meta=event_meta(request, principal), idempotency_key=idempotency_key(request),
    )
    return json_response({"events": events}, 202, position_header(events[-1].position))


async def list_events(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.sessions.events(
        tenant_id,
        request.path_params["session_id"],
        after=query_int(request, "after", 0),
        limit=query_limit(request),
    )
    return json_response(page)


routes = [
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions", list_sessions, methods=["GET"]),
    Route("/v1/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/v1/sessions/{session_id}/state", get_state, methods=["GET"]),
    Route("/v1/sessions/{session_id}/messages", submit_message, methods=["POST"]),
    Route("/v1/sessions/{session_id}/interrupt", interrupt, methods=["POST"]),
    Route("/v1/sessions/{session_id}/archive", archive, methods=["POST"]),
    Route("/v1/sessions/{session_id}/queue", list_queue, methods=["GET"]),
    Route("/v1/sessions/{session_id}/queue/{turn_id}", remove_queued, methods=["DELETE"]),
    Route("/v1/sessions/{session_id}/tool_results", submit_tool_results, methods=["POST"]),
    Route("/v1/sessions/{session_id}/events", list_events, methods=["GET"]),
]
