"""``GET /v1/events`` (the tenant's log, paged by position) and ``GET /v1/audit``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of
from api.io import json_response, query_int, query_limit
from api.operation import LIMIT, STREAM_TYPE, TYPES, Operation, route, seq_after, text_q
from api.query import query_event_types, query_stream_type, query_text
from api.state import engine_of
from engine.domain.audit import AuditEntry
from engine.events import Event
from engine.pages import Page


async def list_events(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).audit.events(
        tenant_id, after=query_int(request, "after", 0), limit=query_limit(request),
        types=query_event_types(request), stream_type=query_stream_type(request),
    )
    return json_response(page)


async def audit(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).audit.entries(
        tenant_id, after=query_int(request, "after", 0), limit=query_limit(request),
        actor=query_text(request, "actor"),
    )
    return json_response(page)


routes = [
    route("GET", "/v1/events", list_events, Operation(
        "A page of the tenant's log, by position", Page[Event],
        query=(LIMIT, seq_after("Events after this position."), TYPES, STREAM_TYPE))),
    route("GET", "/v1/audit", audit, Operation(
        "Who did what, from the log", Page[AuditEntry],
        query=(LIMIT, seq_after("Entries after this position."),
               text_q("actor", "Only this actor's actions.")),
        description="Each event's actor, request id and action, without a model's streamed "
        "output.")),
]
