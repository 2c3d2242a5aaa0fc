"""Export and import: ``GET /v1/sessions/{session_id}/export`` and ``GET /v1/export`` stream
NDJSON (engine/domain/exports.py has the format), ``POST /v1/sessions/import`` takes one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import tenant_of, writer
from api.io import json_response, position_header, read_ndjson
from api.operation import NDJSON, Operation, route
from api.state import engine_of, settings_of
from engine.domain.exports import SessionHeader, TenantHeader
from engine.domain.imports import ImportResult
from engine.events import Event

_FORMAT = ("One JSON object per line: a header (`\"kind\": \"session\"`: the session id, its "
           "`last_seq` and its agent's pinned config), then the session's events (the `Event` "
           "envelope), seq 1 to `last_seq`. Read and sent a page at a time "
           "(`SPOOL_EXPORT_PAGE_EVENTS`), so any size streams in bounded memory.")


async def export_session(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    lines = await engine_of(request).exports.session(
        tenant_id, request.path_params["session_id"])
    return StreamingResponse(lines, media_type=NDJSON)


async def export_tenant(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    return StreamingResponse(await engine_of(request).exports.tenant(tenant_id),
                             media_type=NDJSON)


async def import_sessions(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    body = await read_ndjson(request, settings_of(request).import_max_bytes)
    result, position = await engine_of(request).imports.import_sessions(tenant_id, body,
                                                                        meta=meta)
    return json_response(result, headers=position_header(position))


routes = [
    route("GET", "/v1/sessions/{session_id}/export", export_session, Operation(
        "Export a session", (SessionHeader, Event), media=NDJSON, errors=(409,),
        description=_FORMAT + " Import it with `POST /v1/sessions/import`. 409: the agent "
        "version the session pinned cannot be read (`broken`), so its config cannot go "
        "along.")),
    route("GET", "/v1/export", export_tenant, Operation(
        "Export every session of the tenant", (TenantHeader, SessionHeader, Event),
        media=NDJSON,
        description="A `\"kind\": \"tenant\"` header line, then each session as "
        "`GET /v1/sessions/{session_id}/export` writes it, in session id order (sessions "
        "only: boards, tasks and budgets are not exported).")),
    route("POST", "/v1/sessions/import", import_sessions, Operation(
        "Import an export", ImportResult, body=str, body_media=NDJSON, auth="member",
        position="if_changed", errors=(409,),
        description="The body is an export (`Content-Type: application/x-ndjson`), checked "
        "whole before anything is written: a corrupt line is 422 with `details.line` and "
        "`details.field`. Each session gets new ids (derived from the old ones and this "
        "tenant), keeps its seqs and times, and is written in one transaction with its "
        "agent's config (the agent is created, or the version with that config is pinned). "
        "Importing the same file again writes nothing (`written: 0`). A body over "
        "`SPOOL_IMPORT_MAX_BYTES` is 413: split a tenant export at its session header lines "
        "and import the parts. 409: a session of this tenant imported earlier has changed "
        "since.")),
]
