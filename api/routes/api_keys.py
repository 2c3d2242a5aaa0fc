"""/v1/api_keys (owners, or the admin with Spool-Tenant): create (shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import tenant_of
from api.io import NO_STORE, NUL_FREE, json_response, query_limit, read_json
from api.operation import CREATED_ID, Operation, page, route
from api.query import query_cursor
from api.state import engine_of
from engine.auth.tenants import ApiKey, KeyRole
from engine.pages import Page


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]
    role: KeyRole = "member"


async def create_api_key(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    body = await read_json(request, ApiKeyIn)
    key = await engine_of(request).tenants.create_key(
        tenant_id, name=body.name, role=body.role
    )
    return json_response(key, 201, NO_STORE)


async def list_api_keys(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    page = await engine_of(request).tenants.list_keys(
        tenant_id, after=query_cursor(request, "key"), limit=query_limit(request)
    )
    return json_response(page)


async def revoke_api_key(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    # also closes the streams the key (or a stream token it asked for) opened, everywhere
    key = await engine_of(request).access.revoke_key(
        tenant_id, request.path_params["key_id"]
    )
    return json_response(key)


routes = [
    route("POST", "/v1/api_keys", create_api_key, Operation(
        "Create an API key", ApiKey, 201, ApiKeyIn, auth="owner",
        description="The plaintext `key` (`spk_...`) is in this response only "
        "(`Cache-Control: no-store`); it is stored as a hash.",
        links={"RevokeApiKey": ("revoke_api_key", {"key_id": CREATED_ID})})),
    route("GET", "/v1/api_keys", list_api_keys, Operation(
        "List API keys", Page[ApiKey], auth="owner", query=page("key"))),
    route("DELETE", "/v1/api_keys/{key_id}", revoke_api_key, Operation(
        "Revoke an API key", ApiKey, auth="owner",
        description="The key gets 401 from now on, its stream tokens too; the streams it or "
        "its stream tokens opened are closed (a `: closed: ...` comment), in every process.")),
]
