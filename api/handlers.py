"""The request shapes most resource routes share: create, list (a view, paged by id), get,
update and delete of one tenant's item. Each route keeps its own handler (its name is the
operation's id) and passes the engine's method here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of, writer
from api.io import (
    idempotency_key,
    json_response,
    position_header,
    query_limit,
    query_min_position,
    read_json,
)
from api.query import query_cursor
from engine.domain.boards import Deleted
from engine.events import Event

Write = Callable[..., Awaitable[tuple[Any, Event | None]]]


async def created(request: Request, body_type: type[Any], create: Write) -> Response:
    """A member's create from a JSON body, with ``Idempotency-Key``: 201 and its position."""
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, body_type)
    item, event = await create(
        tenant_id, body, meta=meta, idempotency_key=idempotency_key(request))
    return json_response(item, 201, position_header(event))


async def listed(request: Request, prefix: str,
                 list_items: Callable[..., Awaitable[Any]]) -> Response:
    """A viewer's page of a view, after a ``prefix`` id, waiting for ``min_position``."""
    _, tenant_id = await tenant_of(request, "viewer")
    page = await list_items(
        tenant_id, after=query_cursor(request, prefix), limit=query_limit(request),
        min_position=query_min_position(request),
    )
    return json_response(page)


async def fetched(request: Request, id_param: str,
                  get: Callable[..., Awaitable[Any]]) -> Response:
    """A viewer's read of the item named by path parameter ``id_param``."""
    _, tenant_id = await tenant_of(request, "viewer")
    return json_response(await get(tenant_id, request.path_params[id_param]))


async def viewed(request: Request, id_param: str,
                 read: Callable[..., Awaitable[Any]]) -> Response:
    """``fetched`` from a view: waiting for ``min_position``."""
    _, tenant_id = await tenant_of(request, "viewer")
    return json_response(await read(
        tenant_id, request.path_params[id_param], min_position=query_min_position(request)))


async def updated(request: Request, id_param: str, patch_type: type[Any],
                  update: Write) -> Response:
    """A member's PATCH of the item named by path parameter ``id_param``: 200 and its position
    (none when nothing changed)."""
    tenant_id, meta = await writer(request, "member")
    patch = await read_json(request, patch_type)
    item, event = await update(
        tenant_id, request.path_params[id_param], patch,
        meta=meta, idempotency_key=idempotency_key(request),
    )
    return json_response(item, 200, position_header(event))


async def deleted(request: Request, id_param: str,
                  delete: Callable[..., Awaitable[Event]]) -> Response:
    """A member's delete of the item named by path parameter ``id_param``."""
    tenant_id, meta = await writer(request, "member")
    item_id = request.path_params[id_param]
    event = await delete(tenant_id, item_id, meta=meta)
    return json_response(Deleted(item_id), 200, position_header(event))
