"""``GET /v1/events`` (the tenant's log, paged by position) and ``GET /v1/audit``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import tenant_of
from api.io import json_response, query_int, query_limit
from api.query import query_event_types, query_stream_type, query_text


async def list_events(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.audit.events(
        tenant_id, after=query_int(request, "after", 0), limit=query_limit(request),
        types=query_event_types(request), stream_type=query_stream_type(request),
    )
    return json_response(page)


async def audit(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.audit.entries(
        tenant_id, after=query_int(request, "after", 0), limit=query_limit(request),
        actor=query_text(request, "actor"),
    )
    return json_response(page)


routes = [
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/audit", audit, methods=["GET"]),
]
