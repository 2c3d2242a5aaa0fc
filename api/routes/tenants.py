"""/v1/tenants (admin only): create, list, get, suspend, resume."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import authenticate, event_meta
from api.io import NUL_FREE, json_response, query_limit, read_json
from api.query import query_cursor


class TenantIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]


async def create_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    body = await read_json(request, TenantIn)
    tenant = await request.app.state.engine.tenants.create(body.name)
    return json_response(tenant, 201)


async def list_tenants(request: Request) -> Response:
    await authenticate(request, "admin")
    page = await request.app.state.engine.tenants.list(
        after=query_cursor(request, "ten"), limit=query_limit(request)
    )
    return json_response(page)


async def get_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    tenant = await request.app.state.engine.tenants.get(request.path_params["tenant_id"])
    return json_response(tenant)


async def suspend_tenant(request: Request) -> Response:
    """Also closes the tenant's open streams and ends its running turns (engine/auth/access.py)."""
    principal = await authenticate(request, "admin")
    access = request.app.state.engine.access
    return json_response(await access.suspend(request.path_params["tenant_id"],
                                              meta=event_meta(request, principal)))


async def resume_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    tenants = request.app.state.engine.tenants
    return json_response(await tenants.set_status(request.path_params["tenant_id"], "active"))


routes = [
    Route("/v1/tenants", create_tenant, methods=["POST"]),
    Route("/v1/tenants", list_tenants, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", get_tenant, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}/suspend", suspend_tenant, methods=["POST"]),
    Route("/v1/tenants/{tenant_id}/resume", resume_tenant, methods=["POST"]),
]
