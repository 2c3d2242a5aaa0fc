"""SSE: ``GET /v1/sessions/{id}/stream`` (ids are seq) and ``GET /v1/events/stream`` (the
tenant firehose, ids are positions, filters ``types`` and ``stream_type``), and
``POST /v1/stream_tokens`` (what a browser's EventSource passes as ``?access_token=``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import stream_reader, tenant_of
from api.io import json_response, read_optional_json
from api.query import query_event_types, query_stream_type
from api.sse import EventStreamResponse, cursor, sse_response
from engine.auth.stream_tokens import StreamGrant, StreamTokenIn
from engine.engine import Engine
from engine.errors import Conflict, NotFound
from engine.events import SESSION_ARCHIVED
from engine.ids import is_id
from engine.log.open_streams import Opener
from engine.log.tail import session_tail, tenant_tail


async def session_stream(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    grant = await stream_reader(request, session_id)
    tenant_id = grant.tenant_id
    after = cursor(request)
    engine = request.app.state.engine
    if not is_id(session_id, "ses"):
        raise NotFound(f"session {session_id!r} not found")
    last = await engine.store.last_event(session_id, tenant_id=tenant_id)  # 404 before streaming
    if last.type == SESSION_ARCHIVED and after >= last.seq:
        raise Conflict(f"session {session_id!r} is archived: its stream ended at seq {last.seq}",
                       details={"field": "after", "last_seq": last.seq})
    if after:
        engine.metrics.sse_resumes.inc()
    tail = session_tail(engine.store, engine.fanout, tenant_id=tenant_id, stream_id=session_id,
                        after=after)
    return _opened(engine, sse_response(tail, lambda event: event.seq, engine.metrics), grant)


async def tenant_stream(request: Request) -> Response:
    grant = await stream_reader(request)
    tenant_id = grant.tenant_id
    after = cursor(request)
    types, stream_type = query_event_types(request), query_stream_type(request)
    engine = request.app.state.engine
    if after:
        engine.metrics.sse_resumes.inc()
    tail = tenant_tail(engine.store, engine.fanout, tenant_id=tenant_id, after=after,
                       types=types, stream_type=stream_type)
    return _opened(engine, sse_response(tail, lambda event: event.position, engine.metrics),
                   grant)


def _opened(engine: Engine, response: EventStreamResponse,
            grant: StreamGrant) -> EventStreamResponse:
    """Registered as opened by ``grant``'s key: revoking it, or suspending the tenant, closes
    the stream (engine/auth/access.py)."""
    response.when_ended(engine.open_streams.add(response, Opener(grant.tenant_id,
                                                                 grant.key_id)))
    return response


async def create_stream_token(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "viewer")
    body = await read_optional_json(request, StreamTokenIn)
    token = await request.app.state.engine.stream_tokens.create(tenant_id, principal.key_id,
                                                                 body)
    return json_response(token, 201, {"Cache-Control": "no-store"})


routes = [
    Route("/v1/stream_tokens", create_stream_token, methods=["POST"]),
    Route("/v1/sessions/{session_id}/stream", session_stream, methods=["GET"]),
    Route("/v1/events/stream", tenant_stream, methods=["GET"]),
]
