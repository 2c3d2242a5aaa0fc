"""/v1/agents: create, list, get, update (PATCH: a new immutable version), versions, archive;
runtime tokens (owners) and the heartbeat their holders send."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import agent_runtime, event_meta, tenant_of
from api.io import (
    NUL_FREE,
    idempotency_key,
    json_response,
    position_header,
    query_int,
    query_limit,
    read_json,
    read_optional_json,
)
from api.query import query_cursor
from engine.domain.agents import AgentPatch, HeartbeatIn
from engine.events import AgentConfig, EventMeta


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
        tenant_id, after=query_cursor(request, "agt"), limit=query_limit(request),
        min_position=query_int(request, "min_position", None),
    )
    return json_response(page)


async def get_agent(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "viewer")
    agent = await request.app.state.engine.agents.read(
        tenant_id, request.path_params["agent_id"],
        min_position=query_int(request, "min_position", None))
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


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)] = "runtime"


async def create_token(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    body = await read_optional_json(request, TokenIn)
    token = await request.app.state.engine.agent_tokens.create(
        tenant_id, request.path_params["agent_id"], name=body.name)
    return json_response(token, 201, {"Cache-Control": "no-store"})


async def list_tokens(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    page = await request.app.state.engine.agent_tokens.list(
        tenant_id, request.path_params["agent_id"], after=query_cursor(request, "atk"),
        limit=query_limit(request))
    return json_response(page)


async def revoke_token(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    token = await request.app.state.engine.agent_tokens.revoke(
        tenant_id, request.path_params["agent_id"], request.path_params["token_id"])
    return json_response(token)


async def heartbeat(request: Request) -> Response:
    agent_id = request.path_params["agent_id"]
    runtime = await agent_runtime(request, agent_id)
    body = await read_optional_json(request, HeartbeatIn)
    meta = EventMeta(actor=runtime.token_id, request_id=request.state.request_id)
    event = await request.app.state.engine.agents.heartbeat(
        runtime.tenant_id, agent_id, runtime.token_id, body.note, meta=meta)
    return json_response({"event": event}, 202, position_header(event.position))


routes = [
    Route("/v1/agents", create_agent, methods=["POST"]),
    Route("/v1/agents", list_agents, methods=["GET"]),
    Route("/v1/agents/{agent_id}", get_agent, methods=["GET"]),
    Route("/v1/agents/{agent_id}", update_agent, methods=["PATCH"]),
    Route("/v1/agents/{agent_id}/versions", list_versions, methods=["GET"]),
    Route("/v1/agents/{agent_id}/archive", archive_agent, methods=["POST"]),
    Route("/v1/agents/{agent_id}/tokens", create_token, methods=["POST"]),
    Route("/v1/agents/{agent_id}/tokens", list_tokens, methods=["GET"]),
    Route("/v1/agents/{agent_id}/tokens/{token_id}", revoke_token, methods=["DELETE"]),
    Route("/v1/agents/{agent_id}/heartbeat", heartbeat, methods=["POST"]),
]
