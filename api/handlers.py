"""The request shapes most resource routes share: create, list (a view paged by id, or what is
under one item, paged by seq), get, update, archive and delete of one tenant's item. Each route
keeps its own handler (its name is the operation's id) and passes the engine's method here."""

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
    query_int,
    query_limit,
    query_min_position,
    read_json,
)
from api.query import query_cursor
from engine.domain.boards import Deleted
from engine.events import Event

Write = Callable[..., Awaitable[tuple[Any, Event | None]]]
Read = Callable[..., Awaitable[Any]]
# A list's own filters, read from the query once the caller is authenticated.
Filters = Callable[[Request], dict[str, Any]]


async def created(request: Request, body_type: type[Any], create: Write) -> Response:
    """A member's create from a JSON body, with ``Idempotency-Key``: 201 and its position."""
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, body_type)
    item, event = await create(
        tenant_id, body, meta=meta, idempotency_key=idempotency_key(request))
    return json_response(item, 201, position_header(event))


async def listed(request: Request, prefix: str, list_items: Read,
                 filters: Filters | None = None) -> Response:
    """A viewer's page of a view, after a ``prefix`` id, waiting for ``min_position``; with
    ``filters``, only the items they match."""
    _, tenant_id = await tenant_of(request, "viewer")
    page = await list_items(
        tenant_id, **(filters(request) if filters is not None else {}),
        after=query_cursor(request, prefix), limit=query_limit(request),
        min_position=query_min_position(request),
    )
    return json_response(page)


async def listed_by_seq(request: Request, id_param: str, list_items: Read) -> Response:
    """A viewer's page of what is under the item named by path parameter ``id_param``, paged
    by a number (``after`` a seq or a version)."""
    _, tenant_id = await tenant_of(request, "viewer")
    page = await list_items(
        tenant_id, request.path_params[id_param], after=query_int(request, "after", 0),
        limit=query_limit(request),
    )
    return json_response(page)


async def fetched(request: Request, id_param: str, get: Read) -> Response:
    """A viewer's read of the item named by path parameter ``id_param``."""
    _, tenant_id = await tenant_of(request, "viewer")
    return json_response(await get(tenant_id, request.path_params[id_param]))


async def viewed(request: Request, id_param: str, read: Read) -> Response:
    """``fetched`` from a view: waiting for ``min_position``."""
    _, tenant_id = await tenant_of(request, "viewer")
    return json_response(await read(
        tenant_id, request.path_params[id_param], min_position=query_min_position(request)))


async def created_under(request: Request, id_param: str, body_type: type[Any],
                        create: Write) -> Response:
    """``created`` under the item named by path parameter ``id_param``."""
    return await _written(request, id_param, body_type, create, 201)


async def updated(request: Request, id_param: str, patch_type: type[Any],
                  update: Write) -> Response:
    """A member's PATCH of the item named by path parameter ``id_param``: 200 and its position
    (none when nothing changed)."""
    return await _written(request, id_param, patch_type, update, 200)


async def _written(request: Request, id_param: str, body_type: type[Any], write: Write,
                   status: int) -> Response:
    """A member's write of a JSON body to the item named by ``id_param``, with
    ``Idempotency-Key``."""
    tenant_id, meta = await writer(request, "member")
    body = await read_json(request, body_type)
    item, event = await write(
        tenant_id, request.path_params[id_param], body,
        meta=meta, idempotency_key=idempotency_key(request),
    )
    return json_response(item, status, position_header(event))


async def archived(request: Request, id_param: str, archive: Write) -> Response:
    """A member's archive of the item named by path parameter ``id_param``: 200 and its
    position (none when it was archived already)."""
    tenant_id, meta = await writer(request, "member")
    item, event = await archive(tenant_id, request.path_params[id_param], meta=meta)
    return json_response(item, 200, position_header(event))


async def deleted(request: Request, id_param: str,
                  delete: Callable[..., Awaitable[Event]]) -> Response:
    """A member's delete of the item named by path parameter ``id_param``."""
    tenant_id, meta = await writer(request, "member")
    item_id = request.path_params[id_param]
    event = await delete(tenant_id, item_id, meta=meta)
    return json_response(Deleted(item_id), 200, position_header(event))
