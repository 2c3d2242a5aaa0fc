"""The agent view over HTTP: runtime tokens (shown once, hashed, revocable, good for one agent's
heartbeats only), heartbeats moving an agent from idle to offline and back, busy while a session
runs, usage from spend, and ``GET /v1/sessions`` (filters, pages, tenants apart)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgspec
import pytest

from engine.events import SpendRecorded, Usage, new_event
from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import agent, assert_error, say, session, settle

OFFLINE_SECONDS = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, agent_offline_seconds=OFFLINE_SECONDS)


async def new_token(api: Api, key: str, agent_id: str, **body: Any) -> dict[str, Any]:
    response = await api.request("POST", f"/v1/agents/{agent_id}/tokens", key, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    token: dict[str, Any] = response.json()
    return token


async def beat(api: Api, token: str, agent_id: str, **body: Any) -> Any:
    return await api.request("POST", f"/v1/agents/{agent_id}/heartbeat", token,
                             **({"json": body} if body else {}))


async def view(api: Api, key: str, agent_id: str, position: int = 0) -> dict[str, Any]:
    got = await api.request("GET", f"/v1/agents/{agent_id}?min_position={position}", key)
    assert got.status_code == 200, got.text
    found: dict[str, Any] = got.json()["view"]
    return found


async def test_a_token_is_shown_once_stored_hashed_and_good_for_heartbeats_only(
    api: Api,
) -> None:
    tenant = await api.tenant()
    owner, member = await api.key(tenant, "owner"), await api.key(tenant, "member")
    agent_id = await agent(api, member, [])
    other_agent = await agent(api, member, [])
    assert_error(await api.request("POST", f"/v1/agents/{agent_id}/tokens", member, json={}),
                 403, "forbidden")
    created = await new_token(api, owner, agent_id, name="laptop")
    plaintext = created["token"]
    assert plaintext.startswith("spt_") and created["name"] == "laptop"
    assert created["id"].startswith("atk_") and created["agent_id"] == agent_id

    listed = (await api.request("GET", f"/v1/agents/{agent_id}/tokens", owner)).json()
    assert [t["id"] for t in listed["data"]] == [created["id"]]
    assert "token" not in listed["data"][0]
    async with api.app.state.engine._pool.acquire() as conn:
        stored = await conn.fetchval("SELECT secret_hash FROM agent_tokens WHERE id = $1",
                                     created["id"])
    secret = plaintext[len("spt_") + 27:]  # after spt_<26-char id>_ (the secret may hold "_")
    assert stored == hashlib.sha256(secret.encode()).digest()

    sent = await beat(api, plaintext, agent_id, note="up")
    assert sent.status_code == 202, sent.text
    event = sent.json()["event"]
    assert int(sent.headers["spool-position"]) == event["position"]
    assert event["type"] == "agent_heartbeat" and event["stream_id"] == agent_id
    assert event["data"] == {"type": "agent_heartbeat", "token_id": created["id"], "note": "up"}
    assert event["meta"]["actor"] == created["id"]
    assert (await beat(api, plaintext, agent_id)).status_code == 202  # the body is optional

    # Nothing else: another agent, any other route, a heartbeat with an API key.
    assert_error(await beat(api, plaintext, other_agent), 403, "forbidden")
    assert_error(await api.request("GET", "/v1/agents", plaintext), 403, "forbidden")
    assert_error(await api.request("GET", f"/v1/agents/{agent_id}", plaintext), 403, "forbidden")
    assert_error(await beat(api, member, agent_id), 403, "forbidden")
    assert_error(await beat(api, plaintext[:-2] + "xx", agent_id), 401, "unauthorized")
    assert_error(await api.request("POST", f"/v1/agents/{agent_id}/heartbeat"), 401,
                 "unauthorized")
    error = assert_error(await beat(api, plaintext, agent_id, note="x" * 501), 422,
                         "invalid_request")
    assert error["details"]["field"] == "note"

    revoked = await api.request("DELETE", f"/v1/agents/{agent_id}/tokens/{created['id']}",
                                owner)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_error(await beat(api, plaintext, agent_id), 401, "unauthorized")
    assert_error(await api.request("GET", "/v1/agents", plaintext), 401, "unauthorized")


async def test_tokens_of_other_tenants_and_archived_agents(api: Api) -> None:
    owner = await api.key(await api.tenant("a"), "owner")
    stranger = await api.key(await api.tenant("b"), "owner")
    agent_id = await agent(api, owner, [])
    token = await new_token(api, owner, agent_id)
    for method, path in (("POST", f"/v1/agents/{agent_id}/tokens"),
                         ("GET", f"/v1/agents/{agent_id}/tokens"),
                         ("DELETE", f"/v1/agents/{agent_id}/tokens/{token['id']}")):
        kwargs: dict[str, Any] = {"json": {}} if method == "POST" else {}
        assert_error(await api.request(method, path, stranger, **kwargs), 404, "not_found")
    archived = await api.request("POST", f"/v1/agents/{agent_id}/archive", owner)
    assert archived.status_code == 200
    assert_error(await beat(api, token["token"], agent_id), 409, "conflict")
    assert_error(await api.request("POST", f"/v1/agents/{agent_id}/tokens", owner, json={}),
                 409, "conflict")


async def test_heartbeats_make_an_agent_idle_then_offline(api: Api) -> None:
    key = await api.key(await api.tenant(), "owner")
    agent_id = await agent(api, key, [])
    fresh = await view(api, key, agent_id)
    assert fresh == {"status": "idle", "version": 1, "archived": False,
                     "last_heartbeat_at": None, "active_sessions": 0, "sessions": 0, "turns": 0,
                     "tokens": 0, "usd": 0.0, "cost_nanos": 0}
    token = (await new_token(api, key, agent_id))["token"]
    sent = await beat(api, token, agent_id)
    alive = await view(api, key, agent_id, int(sent.headers["spool-position"]))
    assert alive["status"] == "idle" and alive["last_heartbeat_at"] is not None
    await asyncio.sleep(OFFLINE_SECONDS + 0.2)
    assert (await view(api, key, agent_id))["status"] == "offline"
    listed = (await api.request("GET", "/v1/agents", key)).json()["data"]
    assert [a["view"]["status"] for a in listed] == ["offline"]
    sent = await beat(api, token, agent_id)
    assert (await view(api, key, agent_id, int(sent.headers["spool-position"])))["status"] == \
        "idle"


async def test_an_agent_is_busy_while_its_session_runs_and_sums_its_usage(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    agent_id = await agent(api, key, [{"text": "one two three four five", "delay": 0.1}])
    sid = await session(api, key, agent_id)
    sent = await say(api, key, sid, "go")
    busy = await view(api, key, agent_id, int(sent.headers["spool-position"]))
    assert (busy["status"], busy["active_sessions"], busy["sessions"]) == ("busy", 1, 1)
    running = (await api.request("GET", f"/v1/sessions?status=running&agent_id={agent_id}",
                                 key)).json()["data"]
    assert [s["id"] for s in running] == [sid]

    await settle(api, key, sid, "idle")
    engine = api.app.state.engine
    # the worker recorded the call's spend (unpriced model: tokens, no cost); add a priced one
    events = (await api.request("GET", f"/v1/sessions/{sid}/events", key)).json()["data"]
    [recorded] = [e["data"]["tokens"] for e in events if e["type"] == "spend_recorded"]
    assert recorded == 6  # "go" in, five words out
    [spent] = await engine.store.append(sid, [new_event(SpendRecorded(
        turn_id="turn_x", message_id="msg_x", agent_id=agent_id, model="m", usage=Usage(),
        tokens=1200, cost_nanos=1_500_000_000))], tenant_id=tenant, stream_type="session")
    done = await view(api, key, agent_id, spent.position)
    assert (done["status"], done["active_sessions"], done["turns"]) == ("idle", 0, 1)
    assert (done["tokens"], done["cost_nanos"], done["usd"]) == (1206, 1_500_000_000, 1.5)
    [summary] = (await api.request("GET", f"/v1/sessions?min_position={spent.position}",
                                   key)).json()["data"]
    assert summary["id"] == sid and summary["status"] == "idle"
    assert (summary["turns"], summary["tokens"], summary["usd"]) == (1, 1206, 1.5)
    assert summary["last_position"] == spent.position


async def test_the_session_list_filters_pages_and_keeps_tenants_apart(api: Api) -> None:
    key = await api.key(await api.tenant("a"), "member")
    stranger = await api.key(await api.tenant("b"), "member")
    first, second = await agent(api, key, []), await agent(api, key, [])
    ids = [await session(api, key, first) for _ in range(3)]
    other = await api.request("POST", "/v1/sessions", key, json={"agent_id": second,
                                                                 "title": "other"})
    archived = await api.request("POST", f"/v1/sessions/{ids[0]}/archive", key)
    position = archived.headers["spool-position"]

    everything = (await api.request("GET", f"/v1/sessions?min_position={position}",
                                    key)).json()
    assert [s["id"] for s in everything["data"]] == [*ids, other.json()["id"]]
    assert everything["data"][3]["title"] == "other"
    assert everything["data"][3]["agent_version"] == 1
    page = (await api.request("GET", f"/v1/sessions?agent_id={first}&limit=2", key)).json()
    assert [s["id"] for s in page["data"]] == ids[:2] and page["has_more"]
    rest = (await api.request(
        "GET", f"/v1/sessions?agent_id={first}&limit=2&after={page['next_cursor']}",
        key)).json()
    assert ([s["id"] for s in rest["data"]], rest["has_more"], rest["next_cursor"]) == (
        ids[2:], False, None)
    gone = (await api.request("GET", "/v1/sessions?status=archived", key)).json()["data"]
    assert [s["id"] for s in gone] == [ids[0]]

    assert (await api.request("GET", "/v1/sessions", stranger)).json()["data"] == []
    assert (await api.request("GET", f"/v1/sessions?agent_id={first}", stranger)
            ).json()["data"] == []
    assert_error(await api.request("GET", f"/v1/agents/{first}", stranger), 404, "not_found")
    for query, field in (("status=busy", "status"), ("after=nope", "after"),
                         ("agent_id=x", "agent_id"), ("limit=0", "limit"),
                         ("min_position=-1", "min_position")):
        error = assert_error(await api.request("GET", f"/v1/sessions?{query}", key), 400,
                             "invalid_request")
        assert error["details"]["field"] == field
    error = assert_error(await api.request("GET", "/v1/sessions?min_position=999999", key), 400,
                         "invalid_request")  # past the log's head (503 in test_view_waits.py)
    assert error["details"]["field"] == "min_position"


async def test_heartbeats_do_not_get_in_the_way_of_config_changes(api: Api) -> None:
    tenant = await api.tenant()
    owner = await api.key(tenant, "owner")
    agent_id = await agent(api, owner, [])
    token = (await new_token(api, owner, agent_id))["token"]
    created = (await api.request("GET", f"/v1/agents/{agent_id}", owner)).json()
    beating = True

    async def heartbeats() -> int:
        sent = 0
        while beating:
            assert (await beat(api, token, agent_id)).status_code == 202
            sent += 1
        return sent

    beater = asyncio.create_task(heartbeats())
    await asyncio.sleep(0.1)
    try:
        for n in range(2, 7):  # each PATCH lands between heartbeats: never a spurious 409
            patched = await api.request("PATCH", f"/v1/agents/{agent_id}", owner,
                                        json={"system": f"v{n}"})
            assert patched.status_code == 200, patched.text
            assert patched.json()["version"] == n
    finally:
        beating = False
    assert await beater > 0
    got = (await api.request("GET", f"/v1/agents/{agent_id}", owner)).json()
    assert (got["version"], got["system"]) == (6, "v6")
    assert got["created_at"] == created["created_at"]
    versions = (await api.request("GET", f"/v1/agents/{agent_id}/versions", owner)).json()
    assert [v["version"] for v in versions["data"]] == [1, 2, 3, 4, 5, 6]
    archived = await api.request("POST", f"/v1/agents/{agent_id}/archive", owner)
    assert archived.json()["status"] == "archived"
