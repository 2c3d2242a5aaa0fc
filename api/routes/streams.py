"""SSE: ``GET /v1/sessions/{id}/stream`` (ids are seq) and ``GET /v1/events/stream`` (the
tenant firehose, ids are positions, filters ``types`` and ``stream_type``), and
``POST /v1/stream_tokens`` (what a browser's EventSource passes as ``?access_token=``)."""

from __future__ import annotations

from operator import attrgetter

from starlette.requests import Request
from starlette.responses import Response

from api.auth import stream_reader, tenant_of
from api.io import NO_STORE, json_response, read_optional_json
from api.operation import (
    ACCESS_TOKEN,
    SSE,
    SSE_AFTER,
    SSE_TEXT,
    STREAM_TYPE,
    TYPES,
    Operation,
    route,
)
from api.query import query_event_types, query_stream_type
from api.sse import EventStreamResponse, cursor, sse_response
from api.state import engine_of
from engine.auth.stream_tokens import StreamGrant, StreamToken, StreamTokenIn
from engine.engine import Engine
from engine.log.open_streams import Opener
from engine.log.tail import session_tail, tenant_tail


async def session_stream(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    grant = await stream_reader(request, session_id)
    tenant_id = grant.tenant_id
    after = cursor(request)
    engine = engine_of(request)
    await engine.sessions.stream_start(tenant_id, session_id, after)  # 404, 409 before streaming
    if after:
        engine.metrics.sse_resumes.inc()
    tail = session_tail(engine.store, engine.fanout, tenant_id=tenant_id, stream_id=session_id,
                        after=after)
    return _opened(engine, sse_response(tail, attrgetter("seq"), engine.metrics), grant)


async def tenant_stream(request: Request) -> Response:
    grant = await stream_reader(request)
    tenant_id = grant.tenant_id
    after = cursor(request)
    types, stream_type = query_event_types(request), query_stream_type(request)
    engine = engine_of(request)
    if after:
        engine.metrics.sse_resumes.inc()
    tail = tenant_tail(engine.store, engine.fanout, tenant_id=tenant_id, after=after,
                       types=types, stream_type=stream_type)
    return _opened(engine, sse_response(tail, attrgetter("position"), engine.metrics),
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
    token = await engine_of(request).stream_tokens.create(tenant_id, principal.key_id,
                                                                 body)
    return json_response(token, 201, NO_STORE)


routes = [
    route("POST", "/v1/stream_tokens", create_stream_token, Operation(
        "Create a stream token for EventSource", StreamToken, 201, StreamTokenIn,
        body_optional=True,
        description="A short-lived token (`ttl_seconds`, default 300, at most 3600) to open "
        "SSE streams with `?access_token=`: the tenant's, or only `session_id`'s. Shown once "
        "(`Cache-Control: no-store`); it dies with the API key that asked for it. Once "
        "expired it still resumes a stream (a reconnect with `Last-Event-ID`, as EventSource "
        "sends) for `SPOOL_STREAM_TOKEN_RESUME_SECONDS` more (a day by default).")),
    route("GET", "/v1/sessions/{session_id}/stream", session_stream, Operation(
        "The session's events, live (SSE; ids are seq)", None, media=SSE,
        query=(SSE_AFTER, ACCESS_TOKEN),
        errors=(409,), description=SSE_TEXT + " An archived session's stream ends after "
        "`session_archived`; resuming after it is 409.")),
    route("GET", "/v1/events/stream", tenant_stream, Operation(
        "The tenant's events, live (SSE; ids are positions)", None, media=SSE,
        query=(SSE_AFTER, TYPES, STREAM_TYPE, ACCESS_TOKEN), description=SSE_TEXT)),
]
