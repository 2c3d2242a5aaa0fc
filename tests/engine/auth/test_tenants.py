"""The short authentication cache: a key that authenticated is not looked up again for
``auth_cache_seconds``; a revocation through this process applies at once, one through another
process within the cache time; a wrong secret never matches a cached key."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.auth.tenants import Tenants
from engine.errors import Forbidden, Unauthorized


async def _key(tenants: Tenants) -> tuple[str, str, str]:
    tenant = await tenants.create("acme")
    key = await tenants.create_key(tenant.id, name="k", role="member")
    assert key.key is not None
    return tenant.id, key.id, key.key


async def test_revoked_elsewhere_is_refused_once_the_cache_time_is_over(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    tenants = Tenants(pool, auth_cache_seconds=0.5)
    _, key_id, key = await _key(tenants)
    assert (await tenants.authenticate(key)).key_id == key_id
    # Another process revokes it: straight in the database, this process is not told.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
    finally:
        await conn.close()
    assert (await tenants.authenticate(key)).key_id == key_id  # cached
    await asyncio.sleep(0.6)
    with pytest.raises(Unauthorized, match="revoked"):
        await tenants.authenticate(key)


async def test_revoked_or_suspended_through_this_process_is_refused_at_once(
    pool: asyncpg.Pool,
) -> None:
    tenants = Tenants(pool, auth_cache_seconds=60)
    tenant_id, key_id, key = await _key(tenants)
    await tenants.authenticate(key)
    await tenants.set_status(tenant_id, "suspended")
    with pytest.raises(Forbidden):
        await tenants.authenticate(key)
    await tenants.set_status(tenant_id, "active")
    await tenants.authenticate(key)
    await tenants.revoke_key(tenant_id, key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        await tenants.authenticate(key)


async def test_a_wrong_secret_for_a_cached_key_is_refused(pool: asyncpg.Pool) -> None:
    tenants = Tenants(pool, auth_cache_seconds=60)
    _, _, key = await _key(tenants)
    await tenants.authenticate(key)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized, match="invalid"):
        await tenants.authenticate(wrong)
    assert (await tenants.authenticate(key)).role == "member"
