"""/v1/agents: create, list, get, update (PATCH: a new immutable version), versions, archive."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import event_meta, tenant_of
from api.io import (
    idempotency_key,
    json_response,
    position_header,
    query_int,
    query_limit,
    read_json,
)
from engine.agents import AgentPatch
from engine.events import AgentConfig


async def create_agent(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    config = await read_json(request, AgentConfig)
    agent, event = await request.app.state.engine.agents.create(
        tenant_id, config, meta=event_meta(request, principal),
        idempotency_key=idempotency_key(request),
    )
    return json_response(agent, 201, position_header(event.position))


async def list_agents(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.agents.list_agents(
        tenant_id, after=request.query_params.get("after"), limit=query_limit(request)
    )
    return json_response(page)


async def get_agent(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    agent = await request.app.state.engine.agents.get(tenant_id, request.path_params["agent_id"])
    return json_response(agent)


async def update_agent(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    patch = await read_json(request, AgentPatch)
    agent, event = await request.app.state.engine.agents.update(
        tenant_id, request.path_params["agent_id"], patch,
        meta=event_meta(request, principal), idempotency_key=idempotency_key(request),
    )
    return json_response(agent, 200, position_header(event.position))


async def list_versions(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    page = await request.app.state.engine.agents.versions(
        tenant_id, request.path_params["agent_id"], after=query_int(request, "after", 0),
        limit=query_limit(request),
    )
    return json_response(page)


async def archive_agent(request: Request) -> Response:
    principal, tenant_id = await tenant_of(request, "member")
    agent, event = await request.app.state.engine.agents.archive(
        tenant_id, request.path_params["agent_id"], meta=event_meta(request, principal)
    )
    return json_response(agent, 200, position_header(event.position) if event else None)


routes = [
    Route("/v1/agents", create_agent, methods=["POST"]),
    Route("/v1/agents", list_agents, methods=["GET"]),
    Route("/v1/agents/{agent_id}", get_agent, methods=["GET"]),
    Route("/v1/agents/{agent_id}", update_agent, methods=["PATCH"]),
    Route("/v1/agents/{agent_id}/versions", list_versions, methods=["GET"]),
    Route("/v1/agents/{agent_id}/archive", archive_agent, methods=["POST"]),
]
