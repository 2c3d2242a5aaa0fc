"""Who is calling, and on behalf of which tenant."""

from __future__ import annotations

from starlette.requests import Request

from api.state import engine_of
from engine.auth.agent_tokens import RuntimePrincipal, is_runtime_token
from engine.auth.stream_tokens import StreamGrant, is_stream_token
from engine.auth.tenants import Principal, Role
from engine.errors import Forbidden, InvalidRequest, Unauthorized
from engine.events import EventMeta


async def authenticate(request: Request, role: Role) -> Principal:
    """The caller, who must hold at least ``role`` (401 without credentials, 403 without role)."""
    token = _bearer(request)
    if token is not None and is_runtime_token(token):
        await engine_of(request).agent_tokens.authenticate(token)  # 401 if not valid
        raise Forbidden("an agent runtime token only sends its agent's heartbeats"
                        " (POST /v1/agents/{id}/heartbeat)")
    principal: Principal = await engine_of(request).tenants.authenticate(token)
    principal.require(role)
    return principal


async def agent_runtime(request: Request, agent_id: str) -> RuntimePrincipal:
    """The runtime of ``agent_id``, holding one of its runtime tokens (an API key, or another
    agent's token, is 403)."""
    token = _bearer(request)
    if not token:
        raise Unauthorized("missing credentials: send Authorization: Bearer <agent token>")
    if not is_runtime_token(token):
        await engine_of(request).tenants.authenticate(token)  # 401 if not valid
        raise Forbidden("heartbeats are sent with one of the agent's runtime tokens (spt_...)")
    runtime: RuntimePrincipal = await engine_of(request).agent_tokens.authenticate(token)
    if runtime.agent_id != agent_id:
        raise Forbidden("this agent token belongs to another agent")
    return runtime


async def stream_reader(request: Request, session_id: str | None = None) -> StreamGrant:
    """Whose stream the caller may read, and with which key: from ``?access_token=`` (a
    stream token, for EventSource; it wins over a header), else from the Authorization header
    (viewer). A token for one session reads only that session's stream; an expired token still
    resumes one (a Last-Event-ID header) within its resume window."""
    token = request.query_params.get("access_token")
    if token is None:
        principal, tenant_id = await tenant_of(request, "viewer")
        return StreamGrant(tenant_id, None, principal.key_id)
    if not is_stream_token(token):  # an API key in a URL ends up in logs and histories
        raise Unauthorized("access_token takes a stream token (sst_..., from POST "
                           "/v1/stream_tokens); send API keys in the Authorization header",
                           details={"field": "access_token"})
    resuming = bool(request.headers.get("last-event-id"))
    grant: StreamGrant = await engine_of(request).stream_tokens.authenticate(
        token, resuming=resuming)
    if grant.session_id is not None and grant.session_id != session_id:
        raise Forbidden("this stream token reads only the stream of session "
                        f"{grant.session_id}")
    return grant


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


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
    tenant = await engine_of(request).tenants.get(tenant_id)
    if tenant.status != "active":
        raise Forbidden("this tenant is suspended")
    return principal, tenant_id


def event_meta(request: Request, principal: Principal) -> EventMeta:
    return EventMeta(actor=principal.actor, request_id=request.state.request_id)


async def writer(request: Request, role: Role) -> tuple[str, EventMeta]:
    """For a write: the tenant it acts on (``tenant_of``) and the meta its events carry (who,
    and in which request)."""
    principal, tenant_id = await tenant_of(request, role)
    return tenant_id, event_meta(request, principal)
