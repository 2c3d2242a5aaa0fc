"""/v1/budgets (limits per scope, with what is spent) and /v1/usage (spend grouped by agent,
session, model or day). A scope is ``tenant``, ``agent:<agent id>`` or ``session:<session id>``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import event_meta, tenant_of
from api.io import json_response, position_header, query_date, query_int, query_limit, read_json
from api.query import query_id, query_scope_cursor, query_text
from engine.domain.budgets import BudgetIn, LimitsIn


async def set_budget(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "owner")
    body = await read_json(request, BudgetIn)
    budgets = request.app.state.engine.budgets
    scope = request.path_params["scope"]
    event = await budgets.set(tenant_id, scope, body, meta=event_meta(request, principal))
    if body.limits == LimitsIn():
        return _deleted(scope, event.position)
    budget = await budgets.get(tenant_id, scope, min_position=event.position)
    return json_response(budget, 200, position_header(event.position))


async def delete_budget(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "owner")
    scope = request.path_params["scope"]
    event = await request.app.state.engine.budgets.set(
        tenant_id, scope, BudgetIn(limits=LimitsIn()), meta=event_meta(request, principal))
    return _deleted(scope, event.position)


def _deleted(scope: str, position: int) -> Response:
    return json_response({"scope": scope, "deleted": True}, 200, position_header(position))


async def get_budget(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    budget = await request.app.state.engine.budgets.get(
        tenant_id, request.path_params["scope"],
        min_position=query_int(request, "min_position", None))
    return json_response(budget)


async def list_budgets(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.budgets.list_budgets(
        tenant_id, after=query_scope_cursor(request), limit=query_limit(request),
        min_position=query_int(request, "min_position", None))
    return json_response(page)


async def usage(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.budgets.usage(
        tenant_id, group_by=query_text(request, "group_by"), start=query_date(request, "from"),
        end=query_date(request, "to"), agent_id=query_id(request, "agent_id", "agt"),
        session_id=query_id(request, "session_id", "ses"), after=query_text(request, "after"),
        limit=query_limit(request), min_position=query_int(request, "min_position", None))
    return json_response(page)


routes = [
    Route("/v1/budgets", list_budgets, methods=["GET"]),
    Route("/v1/budgets/{scope}", set_budget, methods=["PUT"]),
    Route("/v1/budgets/{scope}", get_budget, methods=["GET"]),
    Route("/v1/budgets/{scope}", delete_budget, methods=["DELETE"]),
    Route("/v1/usage", usage, methods=["GET"]),
]
