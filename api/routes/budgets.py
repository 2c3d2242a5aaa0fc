"""/v1/budgets (limits per scope, with what is spent) and /v1/usage (spend grouped by agent,
session, model or day). A scope is ``tenant``, ``agent:<agent id>`` or ``session:<session id>``."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of, writer
from api.handlers import viewed
from api.io import (
    json_response,
    position_header,
    query_date,
    query_limit,
    query_min_position,
    read_json,
)
from api.operation import AFTER, LIMIT, MIN_POSITION, Operation, id_q, q, route, text_q
from api.query import SCOPE_PATTERN, query_id, query_scope_cursor, query_text
from api.state import engine_of
from engine.domain.budgets import GROUPS, Budget, BudgetIn, LimitsIn, UsageRow
from engine.events import Event
from engine.pages import Page


class BudgetDeleted(msgspec.Struct):
    """The scope has no budget any more."""

    scope: str
    deleted: bool


async def set_budget(request: Request) -> Response:
    tenant_id, meta = await writer(request, "owner")
    body = await read_json(request, BudgetIn)
    scope = request.path_params["scope"]
    budget, event = await engine_of(request).budgets.set_and_read(
        tenant_id, scope, body, meta=meta)
    if budget is None:
        return _deleted(scope, event)
    return json_response(budget, 200, position_header(event))


async def delete_budget(request: Request) -> Response:
    tenant_id, meta = await writer(request, "owner")
    scope = request.path_params["scope"]
    event = await engine_of(request).budgets.set(
        tenant_id, scope, BudgetIn(limits=LimitsIn()), meta=meta)
    return _deleted(scope, event)


def _deleted(scope: str, event: Event) -> Response:
    return json_response(BudgetDeleted(scope, True), 200, position_header(event))


async def get_budget(request: Request) -> Response:
    return await viewed(request, "scope", engine_of(request).budgets.get)


async def list_budgets(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).budgets.list_budgets(
        tenant_id, after=query_scope_cursor(request), limit=query_limit(request),
        min_position=query_min_position(request))
    return json_response(page)


async def usage(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await engine_of(request).budgets.usage(
        tenant_id, group_by=query_text(request, "group_by"), start=query_date(request, "from"),
        end=query_date(request, "to"), agent_id=query_id(request, "agent_id", "agt"),
        session_id=query_id(request, "session_id", "ses"), after=query_text(request, "after"),
        limit=query_limit(request), min_position=query_min_position(request))
    return json_response(page)


routes = [
    route("GET", "/v1/budgets", list_budgets, Operation(
        "List budgets, with what is spent", Page[Budget],
        query=(LIMIT, q("after", AFTER, pattern=SCOPE_PATTERN), MIN_POSITION))),
    route("PUT", "/v1/budgets/{scope}", set_budget, Operation(
        "Set a scope's limits, whole", (Budget, BudgetDeleted), body=BudgetIn, auth="owner",
        position="always", description="`{\"limits\": {}}` removes the budget. Days and "
        "months are UTC.")),
    route("GET", "/v1/budgets/{scope}", get_budget, Operation(
        "Get a scope's budget", Budget, query=(MIN_POSITION,))),
    route("DELETE", "/v1/budgets/{scope}", delete_budget, Operation(
        "Remove a scope's budget", BudgetDeleted, auth="owner", position="always")),
    route("GET", "/v1/usage", usage, Operation(
        "Spend, grouped", Page[UsageRow],
        query=(q("group_by", "One row per key (absent: one `total` row).", enum=list(GROUPS)),
               q("from", "From this UTC day on.", format="date"),
               q("to", "Before this UTC day (excluded).", format="date"),
               id_q("agent_id", "agt", "Only this agent's spend."),
               id_q("session_id", "ses", "Only this session's spend."),
               LIMIT, text_q("after", AFTER), MIN_POSITION))),
]
