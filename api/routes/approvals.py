"""/v1/approvals: tool calls waiting for a human (``?status=pending``), and the decision."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of, writer
from api.io import NUL_FREE, idempotency_key, json_response, position_header, query_limit, read_json
from api.operation import Operation, id_q, page, q, route
from api.query import query_cursor, query_id, query_text
from api.responses import EventAccepted
from api.state import engine_of
from engine.domain.approvals import STATUSES as APPROVAL_STATUSES
from engine.domain.approvals import Approval
from engine.pages import Page


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["approve", "deny"]
    reason: Annotated[str, NUL_FREE, msgspec.Meta(max_length=2000)] | None = None


async def list_approvals(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).approvals.list(
        tenant_id, status=query_text(request, "status"),
        session_id=query_id(request, "session_id", "ses"),
        after=query_cursor(request, "apr"), limit=query_limit(request),
    )
    return json_response(page)


async def get_approval(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    approval = await engine_of(request).approvals.get(
        tenant_id, request.path_params["approval_id"])
    return json_response(approval)


async def resolve_approval(request: Request) -> Response:
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, DecisionIn)
    event = await engine_of(request).approvals.resolve(
        tenant_id, request.path_params["approval_id"], body.decision, body.reason,
        meta=meta, idempotency_key=idempotency_key(request),
    )
    return json_response(EventAccepted(event), 202, position_header(event))


routes = [
    route("GET", "/v1/approvals", list_approvals, Operation(
        "List approvals", Page[Approval],
        query=(q("status", "Only approvals in this status.", enum=list(APPROVAL_STATUSES)),
               id_q("session_id", "ses", "Only this session's approvals."),
               *page("apr")))),
    route("GET", "/v1/approvals/{approval_id}", get_approval, Operation(
        "Get an approval", Approval)),
    route("POST", "/v1/approvals/{approval_id}", resolve_approval, Operation(
        "Approve or deny a tool call", EventAccepted, 202, DecisionIn, auth="member",
        idempotent=True, position="always",
        description="409 if the approval is not pending. A denied call is answered with an "
        "error the model sees.")),
]
