"""/v1/api_keys (owners, or the admin with Spool-Tenant): create (shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import tenant_of
from api.io import NUL_FREE, json_response, query_limit, read_json
from api.query import query_cursor
from engine.auth.tenants import KeyRole


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
    role: KeyRole = "member"


async def create_api_key(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    body = await read_json(request, ApiKeyIn)
    key = await request.app.state.engine.tenants.create_key(
        tenant_id, name=body.name, role=body.role
    )
    return json_response(key, 201, {"Cache-Control": "no-store"})


async def list_api_keys(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    page = await request.app.state.engine.tenants.list_keys(
        tenant_id, after=query_cursor(request, "key"), limit=query_limit(request)
    )
    return json_response(page)


async def revoke_api_key(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    # also closes the streams the key (or a stream token it asked for) opened, everywhere
    key = await request.app.state.engine.access.revoke_key(
        tenant_id, request.path_params["key_id"]
    )
    return json_response(key)


routes = [
    Route("/v1/api_keys", create_api_key, methods=["POST"]),
    Route("/v1/api_keys", list_api_keys, methods=["GET"]),
    Route("/v1/api_keys/{key_id}", revoke_api_key, methods=["DELETE"]),
]
