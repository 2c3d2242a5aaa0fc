"""Tenants and their API keys, the admin token, and authentication.

Keys look like ``spk_<key id>_<secret>``, minted, hashed and compared as every credential is
(engine/auth/credentials.py): the key is found by its id, and the plaintext returned once, by
``create_key``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from engine.auth.credentials import API_KEY, check_row, hash_secret, matches, mint_admin
from engine.errors import Forbidden, NotFound, Unauthorized
from engine.ids import is_id, new_id
from engine.infra.db import connection, fetch_page
from engine.pages import Page, check_cursor, check_limit

Role = Literal["admin", "owner", "member", "viewer"]
KeyRole = Literal["owner", "member", "viewer"]
_RANK: dict[str, int] = {"viewer": 0, "member": 1, "owner": 2, "admin": 3}


class Tenant(msgspec.Struct):
    id: str
    name: str
    status: Literal["active", "suspended"]
    created_at: datetime
    updated_at: datetime


class ApiKey(msgspec.Struct, omit_defaults=True):
    id: str
    tenant_id: str
    name: str
    role: KeyRole
    created_at: datetime
    revoked_at: datetime | None = None
    key: str | None = None  # the plaintext, present only in the response that created it


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the admin (no tenant) or a key of one tenant."""

    role: Role
    tenant_id: str | None = None
    key_id: str | None = None

    def require(self, role: Role) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"this requires the {role} role; the key has {self.role}")

    @property
    def actor(self) -> str:
        return self.key_id or "admin"


def _tenant(row: Any) -> Tenant:
    return Tenant(**dict(row))


def _api_key(row: Any) -> ApiKey:
    return ApiKey(**dict(row))


_ADMIN_HASH_KEY = "admin_token_sha256"


_AUTH_CACHE_MAX = 10_000


class Tenants:
    def __init__(self, pool: asyncpg.Pool, *, auth_cache_seconds: float = 0.0) -> None:
        self._pool = pool
        self._admin_hash: bytes | None = None
        # key id -> (expires, secret hash, principal): keys that authenticated in the last
        # ``auth_cache_seconds``, so a busy client costs no query per request. A revocation or
        # suspension through this process clears it at once; other processes see it within
        # ``auth_cache_seconds``.
        self._auth_cache: dict[str, tuple[float, bytes, Principal]] = {}
        self._auth_cache_seconds = auth_cache_seconds

    # --- the admin token ----------------------------------------------------------------------

    async def bootstrap_admin(self, configured: str | None) -> str | None:
        """Use SPOOL_ADMIN_TOKEN if set; else the stored hash; else generate one.
        Returns the plaintext only when it was generated now (to print once)."""
        if configured is not None:
            self._admin_hash = hash_secret(configured)
            return None
        generated = mint_admin()
        async with connection(self._pool, "bootstrapping the admin token") as conn:
            inserted = await conn.fetchval(
                "INSERT INTO server_settings (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO NOTHING RETURNING value",
                _ADMIN_HASH_KEY, hash_secret(generated).hex(),
            )
            stored = await conn.fetchval(
                "SELECT value FROM server_settings WHERE key = $1", _ADMIN_HASH_KEY
            )
        self._admin_hash = bytes.fromhex(stored)
        return generated if inserted is not None else None

    # --- authentication -----------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing credentials: send Authorization: Bearer <key>")
        parsed = API_KEY.parse(token)
        if parsed is None:  # not shaped like an API key: it can only be the admin token
            return self._authenticate_admin(token)
        key_id, presented = parsed
        cached = self._auth_cache.get(key_id)
        if (cached is not None and cached[0] > time.monotonic()
                and matches(cached[1], presented)):
            return cached[2]
        async with connection(self._pool, "authenticating") as conn:
            row = await conn.fetchrow(
                "SELECT k.tenant_id, k.role, k.secret_hash, k.revoked_at, t.status"
                " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
                key_id,
            )
        check_row(row, presented, "API key")
        principal = Principal(role=row["role"], tenant_id=row["tenant_id"], key_id=key_id)
        self._remember(key_id, presented, principal)
        return principal

    def _remember(self, key_id: str, secret_hash: bytes, principal: Principal) -> None:
        if self._auth_cache_seconds <= 0:
            return
        if len(self._auth_cache) >= _AUTH_CACHE_MAX:  # bounded: start over rather than grow
            self._auth_cache.clear()
        expires = time.monotonic() + self._auth_cache_seconds
        self._auth_cache[key_id] = (expires, secret_hash, principal)

    def forget_cached(self) -> None:
        """Drop every cached authentication (a key was revoked, or a tenant suspended,
        possibly through another process)."""
        self._auth_cache.clear()

    async def is_active(self, tenant_id: str) -> bool:
        """Whether the tenant exists and is not suspended (the runtime asks before a step)."""
        async with connection(self._pool, "reading a tenant's status") as conn:
            status = await conn.fetchval("SELECT status FROM tenants WHERE id = $1", tenant_id)
        return bool(status == "active")

    def _authenticate_admin(self, token: str) -> Principal:
        if not matches(self._admin_hash, hash_secret(token)):
            raise Unauthorized("invalid credentials")
        return Principal(role="admin")

    # --- tenants ------------------------------------------------------------------------------

    async def create(self, name: str) -> Tenant:
        async with connection(self._pool, "creating a tenant") as conn:
            row = await conn.fetchrow(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING *",
                new_id("ten"), name,
            )
        return _tenant(row)

    async def get(self, tenant_id: str) -> Tenant:
        _check_id(tenant_id, "ten", "tenant")
        async with connection(self._pool, "reading a tenant") as conn:
            row = await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return _tenant(row)

    async def list(self, *, after: str | None, limit: int) -> Page[Tenant]:
        check_cursor(after, "ten")
        return await fetch_page(
            self._pool, "listing tenants",
            "SELECT * FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
            after=after, limit=check_limit(limit), item=_tenant, cursor=lambda t: t.id,
        )

    async def set_status(self, tenant_id: str, status: Literal["active", "suspended"]) -> Tenant:
        _check_id(tenant_id, "ten", "tenant")
        row = await self._change(
            "updating a tenant",
            "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING *",
            tenant_id, status,
        )
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return _tenant(row)

    # --- API keys -----------------------------------------------------------------------------

    async def create_key(self, tenant_id: str, *, name: str, role: KeyRole) -> ApiKey:
        await self.get(tenant_id)
        minted = API_KEY.mint()
        async with connection(self._pool, "creating an API key") as conn:
            row = await conn.fetchrow(
                "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash)"
                " VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id, tenant_id, name, role, created_at, revoked_at",
                minted.id, tenant_id, name, role, minted.hash,
            )
        created = _api_key(row)
        created.key = minted.token
        return created

    async def list_keys(self, tenant_id: str, *, after: str | None, limit: int) -> Page[ApiKey]:
        check_cursor(after, "key")
        return await fetch_page(
            self._pool, "listing API keys",
            "SELECT id, tenant_id, name, role, created_at, revoked_at FROM api_keys"
            " WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            tenant_id, after=after, limit=check_limit(limit), item=_api_key,
            cursor=lambda k: k.id,
        )

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey:
        _check_id(key_id, "key", "API key")
        row = await self._change(
            "revoking an API key",
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
            " WHERE id = $1 AND tenant_id = $2"
            " RETURNING id, tenant_id, name, role, created_at, revoked_at",
            key_id, tenant_id,
        )
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        return _api_key(row)

    async def _change(self, doing: str, query: str, *args: Any) -> Any:
        """An update that may change who authenticates: the row it returns (None: none
        matched), and the cached authentications dropped."""
        async with connection(self._pool, doing) as conn:
            row = await conn.fetchrow(query, *args)
        self._auth_cache.clear()  # after the commit: a later request reads the new row
        return row


def _check_id(value: str, prefix: str, what: str) -> None:
    """A malformed id is unknown: NotFound without a query (and a NUL never reaches Postgres)."""
    if not is_id(value, prefix):
        raise NotFound(f"{what} {value!r} not found")

