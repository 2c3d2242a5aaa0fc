"""/v1/approvals: tool calls waiting for a human (``?status=pending``), and the decision."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import event_meta, tenant_of
from api.io import NUL_FREE, idempotency_key, json_response, position_header, query_limit, read_json
from api.query import query_cursor, query_id, query_text


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["approve", "deny"]
    reason: Annotated[str, NUL_FREE, msgspec.Meta(max_length=2000)] | None = None


async def list_approvals(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.approvals.list(
        tenant_id, status=query_text(request, "status"),
        session_id=query_id(request, "session_id", "ses"),
        after=query_cursor(request, "apr"), limit=query_limit(request),
    )
    return json_response(page)


async def get_approval(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    approval = await request.app.state.engine.approvals.get(
        tenant_id, request.path_params["approval_id"])
    return json_response(approval)


async def resolve_approval(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    body = await read_json(request, DecisionIn)
    event = await request.app.state.engine.approvals.resolve(
        tenant_id, request.path_params["approval_id"], body.decision, body.reason,
        meta=event_meta(request, principal), idempotency_key=idempotency_key(request),
    )
    return json_response({"event": event}, 202, position_header(event.position))


routes = [
    Route("/v1/approvals", list_approvals, methods=["GET"]),
    Route("/v1/approvals/{approval_id}", get_approval, methods=["GET"]),
    Route("/v1/approvals/{approval_id}", resolve_approval, methods=["POST"]),
]
