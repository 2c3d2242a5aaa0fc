"""/v1/tenants (admin only): create, list, get, suspend, resume."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate, event_meta
from api.io import NUL_FREE, json_response, query_limit, read_json
from api.operation import Operation, links_to, page, route
from api.query import query_cursor
from api.state import engine_of
from engine.auth.tenants import Tenant
from engine.pages import Page


class TenantIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)]


async def create_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    body = await read_json(request, TenantIn)
    tenant = await engine_of(request).tenants.create(body.name)
    return json_response(tenant, 201)


async def list_tenants(request: Request) -> Response:
    await authenticate(request, "admin")
    page = await engine_of(request).tenants.list(
        after=query_cursor(request, "ten"), limit=query_limit(request)
    )
    return json_response(page)


async def get_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    tenant = await engine_of(request).tenants.get(request.path_params["tenant_id"])
    return json_response(tenant)


async def suspend_tenant(request: Request) -> Response:
    """Also closes the tenant's open streams and ends its running turns (engine/auth/access.py)."""
    principal = await authenticate(request, "admin")
    access = engine_of(request).access
    return json_response(await access.suspend(request.path_params["tenant_id"],
                                              meta=event_meta(request, principal)))


async def resume_tenant(request: Request) -> Response:
    await authenticate(request, "admin")
    tenants = engine_of(request).tenants
    return json_response(await tenants.set_status(request.path_params["tenant_id"], "active"))


routes = [
    route("POST", "/v1/tenants", create_tenant, Operation(
        "Create a tenant", Tenant, 201, TenantIn, auth="admin",
        links=links_to("tenant_id", GetTenant="get_tenant", SuspendTenant="suspend_tenant",
                       ResumeTenant="resume_tenant"))),
    route("GET", "/v1/tenants", list_tenants, Operation(
        "List tenants", Page[Tenant], auth="admin", query=page("ten"))),
    route("GET", "/v1/tenants/{tenant_id}", get_tenant, Operation(
        "Get a tenant", Tenant, auth="admin")),
    route("POST", "/v1/tenants/{tenant_id}/suspend", suspend_tenant, Operation(
        "Suspend a tenant", Tenant, auth="admin",
        description="Its keys get 403 until it is resumed; its open streams are closed "
        "(a `: closed: ...` comment) and its running and queued turns end "
        "`session_done{status: cancelled, error: \"tenant suspended\"}`.")),
    route("POST", "/v1/tenants/{tenant_id}/resume", resume_tenant, Operation(
        "Resume a tenant", Tenant, auth="admin")),
]
