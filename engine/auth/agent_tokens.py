"""Agent runtime tokens: what an agent's runtime holds to report heartbeats, and nothing else.

Tokens look like ``spt_<token id>_<secret>`` and are kept like API keys
(engine/auth/credentials.py): only a sha256 of the secret, found by id and compared in constant
time, the plaintext returned once by ``create``. Unlike API keys they are not cached: a runtime
sends a heartbeat every few seconds at most, so each is checked against the database and a
revocation (or a suspended tenant) applies to the next heartbeat, whichever process serves it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from engine.auth.credentials import AGENT_TOKEN, check_row
from engine.domain.agents import Agents
from engine.errors import Conflict, NotFound, Unauthorized
from engine.ids import is_id
from engine.infra.db import connection, fetch_page
from engine.pages import Page, check_cursor, check_limit

_COLUMNS = "id, agent_id, name, created_at, revoked_at"


class AgentToken(msgspec.Struct, omit_defaults=True):
    id: str
    agent_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    token: str | None = None  # the plaintext, present only in the response that created it


class RuntimePrincipal(msgspec.Struct, frozen=True):
    """An agent's runtime: it may send that agent's heartbeats."""

    tenant_id: str
    agent_id: str
    token_id: str


def is_runtime_token(token: str) -> bool:
    return AGENT_TOKEN.marks(token)


class AgentTokens:
    def __init__(self, pool: asyncpg.Pool, agents: Agents) -> None:
        self._pool = pool
        self._agents = agents

    async def create(self, tenant_id: str, agent_id: str, *, name: str) -> AgentToken:
        """A new token for the agent (NotFound unknown or another tenant's, Conflict archived)."""
        if (await self._agents.get(tenant_id, agent_id)).status == "archived":
            raise Conflict(f"agent {agent_id!r} is archived")
        minted = AGENT_TOKEN.mint()
        async with connection(self._pool, "creating an agent token") as conn:
            row = await conn.fetchrow(
                "INSERT INTO agent_tokens (id, tenant_id, agent_id, name, secret_hash)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
                minted.id, tenant_id, agent_id, name, minted.hash,
            )
        created = AgentToken(**dict(row))
        created.token = minted.token
        return created

    async def list(self, tenant_id: str, agent_id: str, *, after: str | None,
                   limit: int) -> Page[AgentToken]:
        check_cursor(after, "atk")
        await self._agents.get(tenant_id, agent_id)  # NotFound for an unknown or foreign agent
        return await fetch_page(
            self._pool, "listing agent tokens",
            f"SELECT {_COLUMNS} FROM agent_tokens WHERE tenant_id = $1 AND agent_id = $2"
            " AND id > $3 ORDER BY id LIMIT $4",
            tenant_id, agent_id, after=after, limit=check_limit(limit),
            item=lambda row: AgentToken(**dict(row)), cursor=lambda t: t.id,
        )

    async def revoke(self, tenant_id: str, agent_id: str, token_id: str) -> AgentToken:
        """Revoke (idempotent: a revoked token keeps its first revocation time)."""
        if not is_id(token_id, "atk"):
            raise NotFound(f"agent token {token_id!r} not found")
        async with connection(self._pool, "revoking an agent token") as conn:
            row = await conn.fetchrow(
                "UPDATE agent_tokens SET revoked_at = coalesce(revoked_at, now())"
                f" WHERE id = $1 AND tenant_id = $2 AND agent_id = $3 RETURNING {_COLUMNS}",
                token_id, tenant_id, agent_id,
            )
        if row is None:
            raise NotFound(f"agent token {token_id!r} not found")
        return AgentToken(**dict(row))

    async def authenticate(self, token: str) -> RuntimePrincipal:
        parsed = AGENT_TOKEN.parse(token)
        if parsed is None:
            raise Unauthorized("invalid agent token")
        token_id, presented = parsed
        row = await self._row(token_id)
        check_row(row, presented, "agent token")
        return RuntimePrincipal(row["tenant_id"], row["agent_id"], token_id)

    async def _row(self, token_id: str) -> Any:
        async with connection(self._pool, "authenticating an agent token") as conn:
            return await conn.fetchrow(
                "SELECT a.tenant_id, a.agent_id, a.secret_hash, a.revoked_at, t.status"
                " FROM agent_tokens a JOIN tenants t ON t.id = a.tenant_id WHERE a.id = $1",
                token_id,
            )
