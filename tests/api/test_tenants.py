"""Tenants and API keys: admin-only tenant management, keys shown once and stored hashed,
roles, revocation, suspension."""

from __future__ import annotations

import hashlib

import asyncpg

from engine.settings import Settings
from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error


async def test_tenant_lifecycle_and_paging(api: Api) -> None:
    ids = [await api.tenant(f"t{i}") for i in range(3)]
    first = (await api.request("GET", "/v1/tenants?limit=2", ADMIN_TOKEN)).json()
    assert [t["id"] for t in first["data"]] == ids[:2]
    assert first["has_more"] is True
    rest = await api.request("GET", f"/v1/tenants?limit=2&after={first['next_cursor']}",
                             ADMIN_TOKEN)
    assert [t["id"] for t in rest.json()["data"]] == ids[2:]
    assert rest.json() | {"data": None} == {"data": None, "has_more": False, "next_cursor": None}
    suspended = await api.request("POST", f"/v1/tenants/{ids[0]}/suspend", ADMIN_TOKEN)
    assert suspended.json()["status"] == "suspended"
    resumed = await api.request("POST", f"/v1/tenants/{ids[0]}/resume", ADMIN_TOKEN)
    assert resumed.json()["status"] == "active"
    assert_error(await api.request("GET", "/v1/tenants/ten_nope", ADMIN_TOKEN), 404, "not_found")
    bad_cursor = await api.request("GET", "/v1/tenants?after=zzz", ADMIN_TOKEN)
    assert assert_error(bad_cursor, 400, "invalid_request")["details"] == {"field": "after"}


async def test_tenant_routes_need_the_admin(api: Api) -> None:
    assert_error(await api.request("GET", "/v1/tenants"), 401, "unauthorized")
    assert_error(await api.request("GET", "/v1/tenants", "spa_wrong-token-000000000"), 401,
                 "unauthorized")
    owner = await api.key(await api.tenant())
    assert_error(await api.request("GET", "/v1/tenants", owner), 403, "forbidden")


async def test_key_is_shown_once_and_stored_hashed(api: Api, settings: Settings) -> None:
    tenant = await api.tenant()
    owner = await api.key(tenant)
    created = await api.request("POST", "/v1/api_keys", owner,
                                json={"name": "ci", "role": "viewer"})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("spk_") and body["role"] == "viewer"
    listed = (await api.request("GET", "/v1/api_keys", owner)).json()["data"]
    assert {k["id"] for k in listed} >= {body["id"]}
    assert all("key" not in k for k in listed)
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored = await conn.fetchval("SELECT secret_hash FROM api_keys WHERE id = $1", body["id"])
        dump = await conn.fetchval("SELECT string_agg(t::text, '') FROM api_keys t")
    finally:
        await conn.close()
    secret = body["key"].split("_", 2)[2]
    assert stored == hashlib.sha256(secret.encode()).digest()
    assert secret not in dump


async def test_roles_are_enforced(api: Api) -> None:
    tenant = await api.tenant()
    member = await api.key(tenant, "member")
    viewer = await api.key(tenant, "viewer")
    assert_error(await api.request("GET", "/v1/api_keys", member), 403, "forbidden")
    assert (await api.request("POST", "/v1/sessions", member, json={})).status_code == 201
    assert_error(await api.request("POST", "/v1/sessions", viewer, json={}), 403, "forbidden")


async def test_revoked_key_and_suspended_tenant(api: Api) -> None:
    tenant = await api.tenant()
    owner = await api.key(tenant)
    member = await api.key(tenant, "member")
    keys = (await api.request("GET", "/v1/api_keys", owner)).json()["data"]
    member_id = next(k["id"] for k in keys if k["role"] == "member")
    revoked = await api.request("DELETE", f"/v1/api_keys/{member_id}", owner)
    assert revoked.json()["revoked_at"] is not None
    assert_error(await api.request("POST", "/v1/sessions", member, json={}), 401, "unauthorized")
    await api.request("POST", f"/v1/tenants/{tenant}/suspend", ADMIN_TOKEN)
    assert_error(await api.request("GET", "/v1/api_keys", owner), 403, "forbidden")
    await api.request("POST", f"/v1/tenants/{tenant}/resume", ADMIN_TOKEN)
    assert (await api.request("GET", "/v1/api_keys", owner)).status_code == 200


async def test_keys_of_another_tenant_are_404(api: Api) -> None:
    owner_a = await api.key(await api.tenant("a"))
    owner_b = await api.key(await api.tenant("b"))
    keys_b = (await api.request("GET", "/v1/api_keys", owner_b)).json()["data"]
    response = await api.request("DELETE", f"/v1/api_keys/{keys_b[0]['id']}", owner_a)
    assert_error(response, 404, "not_found")


async def test_malformed_keys_are_401(api: Api) -> None:
    for token in ["spk_short", "spk_" + "A" * 26 + "_" + "x" * 43, "nonsense"]:
        assert_error(await api.request("GET", "/v1/api_keys", token), 401, "unauthorized")


async def test_admin_must_name_a_tenant(api: Api) -> None:
    response = await api.request("POST", "/v1/api_keys", ADMIN_TOKEN, json={"name": "k"})
    assert assert_error(response, 400, "invalid_request")["details"] == {"field": "Spool-Tenant"}
    response = await api.request("POST", "/v1/api_keys", ADMIN_TOKEN, json={"name": "k"},
                                 headers={"Spool-Tenant": "ten_unknown"})
    assert_error(response, 404, "not_found")


async def test_malformed_ids_in_paths_are_404(api: Api) -> None:
    owner = await api.key(await api.tenant())
    for method, path, token in [
        ("GET", "/v1/tenants/a%00b", ADMIN_TOKEN),
        ("POST", "/v1/tenants/a%00b/suspend", ADMIN_TOKEN),
        ("POST", "/v1/tenants/a%00b/resume", ADMIN_TOKEN),
        ("POST", "/v1/tenants/key_01ARZ3NDEKTSV4RRFFQ69G5FAV/suspend", ADMIN_TOKEN),
        ("DELETE", "/v1/api_keys/a%00b", owner),
        ("DELETE", "/v1/api_keys/ten_01ARZ3NDEKTSV4RRFFQ69G5FAV", owner),
    ]:
        error = assert_error(await api.request(method, path, token), 404, "not_found")
        assert error["message"].endswith("not found"), error
    response = await api.request("GET", "/v1/api_keys", ADMIN_TOKEN,
                                 headers={"Spool-Tenant": "ten_\x00"})
    assert_error(response, 404, "not_found")


async def test_nul_in_a_name_is_422_naming_it(api: Api) -> None:
    tenant = await api.tenant()
    for path, headers in [("/v1/tenants", {}), ("/v1/api_keys", {"Spool-Tenant": tenant})]:
        response = await api.request("POST", path, ADMIN_TOKEN, json={"name": "a\u0000"},
                                     headers=headers)
        assert assert_error(response, 422, "invalid_request")["details"] == {"field": "name"}


async def test_the_admin_cannot_act_on_a_suspended_tenant_but_can_resume_it(api: Api) -> None:
    tenant = await api.tenant()
    as_tenant = {"Spool-Tenant": tenant}
    await api.request("POST", f"/v1/tenants/{tenant}/suspend", ADMIN_TOKEN)
    for method, path, body in [("POST", "/v1/sessions", {}), ("GET", "/v1/api_keys", None),
                               ("POST", "/v1/api_keys", {"name": "k"})]:
        response = await api.request(method, path, ADMIN_TOKEN, json=body, headers=as_tenant)
        assert assert_error(response, 403, "forbidden")["message"] == "this tenant is suspended"
    assert (await api.request("GET", f"/v1/tenants/{tenant}", ADMIN_TOKEN)).status_code == 200
    resumed = await api.request("POST", f"/v1/tenants/{tenant}/resume", ADMIN_TOKEN)
    assert resumed.json()["status"] == "active"
    response = await api.request("POST", "/v1/sessions", ADMIN_TOKEN, json={}, headers=as_tenant)
    assert response.status_code == 201
