"""Who is calling, and on behalf of which tenant."""

from __future__ import annotations

from starlette.requests import Request

from engine.errors import Forbidden, InvalidRequest
from engine.events import EventMeta
from engine.tenants import Principal, Role


async def authenticate(request: Request, role: Role) -> Principal:
    """The caller, who must hold at least ``role`` (401 without credentials, 403 without role)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal: Principal = await request.app.state.engine.tenants.authenticate(
        token.strip() if scheme.lower() == "bearer" else None
    )
    principal.require(role)
    return principal


async def tenant_of(request: Request, role: Role) -> tuple[Principal, str]:
    """The caller and the tenant it acts on: its own, or for the admin the Spool-Tenant header.
    A suspended tenant is 403 for the admin too (the tenant routes themselves do not come here,
    so the admin can still resume it)."""
    principal = await authenticate(request, role)
    if principal.tenant_id is not None:
        return principal, principal.tenant_id
    tenant_id = request.headers.get("spool-tenant")
    if not tenant_id:
        raise InvalidRequest("the admin must name a tenant in the Spool-Tenant header",
                             field="Spool-Tenant")
    tenant = await request.app.state.engine.tenants.get(tenant_id)
    if tenant.status != "active":
        raise Forbidden("this tenant is suspended")
    return principal, tenant_id


def event_meta(request: Request, principal: Principal) -> EventMeta:
    return EventMeta(actor=principal.actor, request_id=request.state.request_id)
