"""/v1/agents: create, list, get, update (PATCH: a new immutable version), versions, archive;
runtime tokens (owners) and the heartbeat their holders send."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.auth import agent_runtime, tenant_of
from api.handlers import archived, created, listed, listed_by_seq, updated, viewed
from api.io import (
    NO_STORE,
    NUL_FREE,
    json_response,
    position_header,
    query_limit,
    read_optional_json,
)
from api.operation import (
    CREATED_ID,
    LIMIT,
    MIN_POSITION,
    Operation,
    links_to,
    page,
    route,
    seq_after,
    view_page,
)
from api.query import query_cursor
from api.responses import EventAccepted
from api.state import engine_of
from engine.auth.agent_tokens import AgentToken
from engine.domain.agents import Agent, AgentPatch, AgentVersion, HeartbeatIn
from engine.events import AgentConfig, EventMeta
from engine.pages import Page


async def create_agent(request: Request) -> Response:
    return await created(request, AgentConfig, engine_of(request).agents.create)


async def list_agents(request: Request) -> Response:
    return await listed(request, "agt", engine_of(request).agents.list_agents)


async def get_agent(request: Request) -> Response:
    return await viewed(request, "agent_id", engine_of(request).agents.read)


async def update_agent(request: Request) -> Response:
    return await updated(request, "agent_id", AgentPatch, engine_of(request).agents.update)


async def list_versions(request: Request) -> Response:
    return await listed_by_seq(request, "agent_id", engine_of(request).agents.versions)


async def archive_agent(request: Request) -> Response:
    return await archived(request, "agent_id", engine_of(request).agents.archive)


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, NUL_FREE, msgspec.Meta(min_length=1, max_length=200)] = "runtime"


async def create_token(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    body = await read_optional_json(request, TokenIn)
    token = await engine_of(request).agent_tokens.create(
        tenant_id, request.path_params["agent_id"], name=body.name)
    return json_response(token, 201, NO_STORE)


async def list_tokens(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    page = await engine_of(request).agent_tokens.list(
        tenant_id, request.path_params["agent_id"], after=query_cursor(request, "atk"),
        limit=query_limit(request))
    return json_response(page)


async def revoke_token(request: Request) -> Response:
    _, tenant_id = await tenant_of(request, "owner")
    token = await engine_of(request).agent_tokens.revoke(
        tenant_id, request.path_params["agent_id"], request.path_params["token_id"])
    return json_response(token)


async def heartbeat(request: Request) -> Response:
    agent_id = request.path_params["agent_id"]
    runtime = await agent_runtime(request, agent_id)
    body = await read_optional_json(request, HeartbeatIn)
    meta = EventMeta(actor=runtime.token_id, request_id=request.state.request_id)
    event = await engine_of(request).agents.heartbeat(
        runtime.tenant_id, agent_id, runtime.token_id, body.note, meta=meta)
    return json_response(EventAccepted(event), 202, position_header(event))


routes = [
    route("POST", "/v1/agents", create_agent, Operation(
        "Create an agent", Agent, 201, AgentConfig, auth="member", idempotent=True,
        position="always", description="`view` is null in write responses.",
        links=links_to("agent_id", GetAgent="get_agent", UpdateAgent="update_agent",
                       ListVersions="list_versions", ArchiveAgent="archive_agent",
                       CreateToken="create_token", ListTokens="list_tokens"))),
    route("GET", "/v1/agents", list_agents, Operation(
        "List agents, with their view", Page[Agent], query=view_page("agt"))),
    route("GET", "/v1/agents/{agent_id}", get_agent, Operation(
        "Get an agent, with its view", Agent, query=(MIN_POSITION,))),
    route("PATCH", "/v1/agents/{agent_id}", update_agent, Operation(
        "Update an agent: a new immutable version", Agent, body=AgentPatch, auth="member",
        idempotent=True, position="always", errors=(409,),
        description="Each field given replaces the current one. Sessions keep the version "
        "they pinned.")),
    route("GET", "/v1/agents/{agent_id}/versions", list_versions, Operation(
        "List an agent's versions", Page[AgentVersion],
        query=(LIMIT, seq_after("Versions after this one.")))),
    route("POST", "/v1/agents/{agent_id}/archive", archive_agent, Operation(
        "Archive an agent", Agent, auth="member", position="if_changed", errors=(409,),
        description="No new session may use it; sessions that pinned it keep running. "
        "Archiving an archived agent changes nothing.")),
    route("POST", "/v1/agents/{agent_id}/tokens", create_token, Operation(
        "Create an agent runtime token", AgentToken, 201, TokenIn, body_optional=True,
        auth="owner", errors=(409,),
        description="The plaintext `token` (`spt_...`) is in this response only. It is good "
        "for one thing: the agent's heartbeats. 409 for an archived agent.",
        links={"RevokeToken": ("revoke_token", {"agent_id": "$request.path.agent_id",
                                                "token_id": CREATED_ID})})),
    route("GET", "/v1/agents/{agent_id}/tokens", list_tokens, Operation(
        "List an agent's runtime tokens", Page[AgentToken], auth="owner", query=page("atk"))),
    route("DELETE", "/v1/agents/{agent_id}/tokens/{token_id}", revoke_token, Operation(
        "Revoke an agent runtime token", AgentToken, auth="owner")),
    route("POST", "/v1/agents/{agent_id}/heartbeat", heartbeat, Operation(
        "Report that the agent's runtime is alive", EventAccepted, 202, HeartbeatIn,
        body_optional=True, auth="runtime", position="always", errors=(409,),
        description="Appends `agent_heartbeat`. 409 for an archived agent; 403 with another "
        "agent's token or an API key.")),
]
