"""/v1/agents end to end: versions, validation naming the field, archive, tenant isolation, and
sessions pinning a version."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import Api
from tests.helpers import assert_error

LOOKUP = {
    "name": "lookup",
    "description": "Look a word up",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}},
                     "required": ["word"]},
}


def config(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "helper",
        "model": {"adapter": "scripted", "name": "scripted",
                  "script": [{"text": "hello there"}, {"tool_calls": [
                      {"name": "lookup", "input": {"word": "spool"}}]}]},
        "system": "Be brief.",
        "tools": [LOOKUP],
        "limits": {"max_turns": 5, "max_tokens_per_turn": 1000},
    }
    body.update(overrides)
    return body


async def test_create_update_versions_and_archive(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    created = await api.request("POST", "/v1/agents", key, json=config())
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["id"].startswith("agt_") and agent["version"] == 1
    assert agent["status"] == "active" and agent["tools"][0]["executor"] == "client"
    assert int(created.headers["spool-position"]) >= 1
    aid = agent["id"]

    patched = await api.request("PATCH", f"/v1/agents/{aid}", key,
                                json={"system": None, "limits": {"max_turns": 2}})
    assert patched.status_code == 200, patched.text
    v2 = patched.json()
    assert v2["version"] == 2 and v2["system"] is None
    assert v2["limits"] == {"max_turns": 2, "max_tokens_per_turn": None}
    assert v2["tools"] == agent["tools"]  # untouched fields stay

    versions = (await api.request("GET", f"/v1/agents/{aid}/versions", key)).json()
    assert [v["version"] for v in versions["data"]] == [1, 2]
    assert versions["data"][0]["config"]["system"] == "Be brief."  # versions are immutable
    page = (await api.request("GET", f"/v1/agents/{aid}/versions?limit=1", key)).json()
    assert page["has_more"] and page["next_cursor"] == "1"

    archived = await api.request("POST", f"/v1/agents/{aid}/archive", key)
    assert archived.json()["status"] == "archived"
    again = await api.request("POST", f"/v1/agents/{aid}/archive", key)
    assert again.status_code == 200 and "spool-position" not in again.headers
    assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key, json={"name": "x"}),
                 409, "conflict")
    error = assert_error(await api.request("POST", "/v1/sessions", key, json={"agent_id": aid}),
                         409, "conflict")
    assert error["details"] == {"field": "agent_id"}


async def test_list_pages_by_id(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    ids = [(await api.request("POST", "/v1/agents", key, json=config(name=f"a{i}"))).json()["id"]
           for i in range(3)]
    first = (await api.request("GET", "/v1/agents?limit=2", key)).json()
    assert [a["id"] for a in first["data"]] == ids[:2] and first["has_more"]
    rest = (await api.request("GET", f"/v1/agents?after={first['next_cursor']}", key)).json()
    assert [a["id"] for a in rest["data"]] == ids[2:] and not rest["has_more"]
    assert [a["name"] for a in first["data"]] == ["a0", "a1"]


@pytest.mark.parametrize(("body", "status", "field"), [
    (config(name=""), 422, "name"),
    (config(model={"adapter": "gpt"}), 422, "model.adapter"),
    (config(tools=[{**LOOKUP, "name": "has space"}]), 422, "tools[0].name"),
    (config(tools=[{**LOOKUP, "executor": "remote"}]), 422, "tools[0].executor"),
    (config(limits={"max_turns": 0}), 422, "limits.max_turns"),
    (config(surprise=1), 422, "surprise"),
    (config(tools=[LOOKUP, LOOKUP]), 400, "tools[1].name"),
    (config(tools=[{**LOOKUP, "executor": "server"}]), 400, "tools[0].executor"),
    (config(tools=[{**LOOKUP, "input_schema": {"type": "nonsense"}}]), 400,
     "tools[0].input_schema"),
    (config(tools=[{**LOOKUP, "input_schema": {"type": "string"}}]), 400,
     "tools[0].input_schema.type"),
    (config(tools=[]), 400, "model.script[1].tool_calls[0].name"),
    (config(model={"adapter": "openai", "name": "gpt", "script": []}), 400, "model.script"),
    # past what every JSON parser reads exactly, 2^53 - 1 (the document gives the maximum)
    (config(limits={"max_turns": 2**53}), 422, "limits.max_turns"),
    (config(limits={"max_tokens_per_turn": 2**64 - 1}), 422, "limits.max_tokens_per_turn"),
])
async def test_invalid_config_names_the_field(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    key = await api.key(await api.tenant(), "member")
    error = assert_error(await api.request("POST", "/v1/agents", key, json=body), status,
                         "invalid_request")
    assert error["details"]["field"] == field, error
    listed = (await api.request("GET", "/v1/agents", key)).json()
    assert listed["data"] == []  # nothing written


async def test_a_patch_is_checked_like_a_config(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    aid = (await api.request("POST", "/v1/agents", key, json=config())).json()["id"]
    error = assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key,
                                           json={"tools": []}), 400, "invalid_request")
    assert error["details"]["field"] == "model.script[1].tool_calls[0].name"
    error = assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key,
                                           json={"colour": "red"}), 422, "invalid_request")
    assert error["details"]["field"] == "colour"
    assert (await api.request("GET", f"/v1/agents/{aid}", key)).json()["version"] == 1


async def test_another_tenants_agent_is_404(api: Api) -> None:
    key_a = await api.key(await api.tenant("a"), "member")
    key_b = await api.key(await api.tenant("b"), "member")
    aid = (await api.request("POST", "/v1/agents", key_a, json=config())).json()["id"]
    for method, path, body in [
        ("GET", f"/v1/agents/{aid}", None),
        ("GET", f"/v1/agents/{aid}/versions", None),
        ("PATCH", f"/v1/agents/{aid}", {"name": "mine"}),
        ("POST", f"/v1/agents/{aid}/archive", None),
    ]:
        assert_error(await api.request(method, path, key_b, json=body), 404, "not_found")
    error = assert_error(await api.request("POST", "/v1/sessions", key_b, json={"agent_id": aid}),
                         404, "not_found")
    assert error["details"] == {"field": "agent_id"}
    assert (await api.request("GET", "/v1/agents", key_b)).json()["data"] == []


async def test_sessions_pin_a_version(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    aid = (await api.request("POST", "/v1/agents", key, json=config())).json()["id"]
    await api.request("PATCH", f"/v1/agents/{aid}", key, json={"system": "v2"})
    current = (await api.request("POST", "/v1/sessions", key, json={"agent_id": aid})).json()
    assert (current["agent_id"], current["agent_version"]) == (aid, 2)
    pinned = (await api.request("POST", "/v1/sessions?agent_version=1", key,
                                json={"agent_id": aid})).json()
    assert pinned["agent_version"] == 1
    await api.request("PATCH", f"/v1/agents/{aid}", key, json={"system": "v3"})
    again = (await api.request("GET", f"/v1/sessions/{pinned['id']}", key)).json()
    assert again["agent_version"] == 1  # an update never moves a session
    error = assert_error(await api.request("POST", "/v1/sessions?agent_version=9", key,
                                           json={"agent_id": aid}), 400, "invalid_request")
    assert error["details"]["field"] == "agent_version"
    error = assert_error(await api.request("POST", "/v1/sessions?agent_version=1", key, json={}),
                         400, "invalid_request")
    assert error["details"]["field"] == "agent_version"


async def test_viewers_read_members_write(api: Api) -> None:
    tenant = await api.tenant()
    member, viewer = await api.key(tenant, "member"), await api.key(tenant, "viewer")
    aid = (await api.request("POST", "/v1/agents", member, json=config())).json()["id"]
    assert (await api.request("GET", f"/v1/agents/{aid}", viewer)).status_code == 200
    assert_error(await api.request("POST", "/v1/agents", viewer, json=config()), 403,
                 "forbidden")
    assert_error(await api.request("PATCH", f"/v1/agents/{aid}", viewer, json={"name": "x"}),
                 403, "forbidden")


# --- a PATCH is held to the create-time rules; a version that cannot be read breaks only its agent


async def stored_seq(api: Api, tenant: str, agent_id: str) -> int:
    """The agent stream's last seq: what a request appended, read from the store."""
    return await api.app.state.engine.store.stream_version(agent_id, tenant_id=tenant)


async def test_the_long_metadata_patch_is_a_422_that_appends_nothing(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    aid = (await api.request("POST", "/v1/agents", key, json=config())).json()["id"]
    error = assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key,
                                           json={"metadata": {"k": "v" * 2001}}),
                         422, "invalid_request")
    assert error["details"]["field"].startswith("metadata"), error
    assert await stored_seq(api, tenant, aid) == 1
    for path in (f"/v1/agents/{aid}", "/v1/agents", f"/v1/agents/{aid}/versions"):
        assert (await api.request("GET", path, key)).status_code == 200, path


@pytest.mark.parametrize(("patch", "field"), [
    ({"metadata": {f"k{i}": "v" for i in range(33)}}, "metadata"),
    ({"metadata": {"k": "a\x00b"}}, "metadata[...]"),
    ({"metadata": {"a\x00b": "v"}}, "metadata"),
    ({"metadata": {"": "v"}}, "metadata"),
    ({"metadata": {"k" * 201: "v"}}, "metadata"),
    ({"name": ""}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"system": "a\x00b"}, "system"),
    ({"tools": [{**LOOKUP, "name": f"t{i}"} for i in range(129)]}, "tools"),
    ({"tools": [{**LOOKUP, "description": "d" * 4001}]}, "tools[0].description"),
    ({"model": {"adapter": "scripted", "script": [{"delay": 61}]}}, "model.script[0].delay"),
    ({"limits": {"max_tokens_per_turn": 0}}, "limits.max_tokens_per_turn"),
])
async def test_every_create_time_rule_holds_on_patch(
    api: Api, patch: dict[str, Any], field: str
) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    aid = (await api.request("POST", "/v1/agents", key, json=config())).json()["id"]
    created = assert_error(await api.request("POST", "/v1/agents", key, json=config(**patch)),
                           422, "invalid_request")
    patched = assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key, json=patch),
                           422, "invalid_request")
    assert patched["details"]["field"] == created["details"]["field"] == field, patched
    assert await stored_seq(api, tenant, aid) == 1


def _unreadable_version(version: int, **overrides: Any) -> str:
    """A version's stored data as a build without the PATCH checks wrote it."""
    return json.dumps({"type": "agent_updated", "version": version,
                       "config": {**config(), **overrides}})


async def _corrupt(database_url: str, agent_id: str, seq: int, data: str) -> None:
    """Overwrite a stored event's data in the events table (a corrupted or legacy event)."""
    conn = await asyncpg.connect(database_url)
    try:
        done = await conn.execute("UPDATE events SET data = $3::text::json"
                                  " WHERE stream_id = $1 AND seq = $2", agent_id, seq, data)
    finally:
        await conn.close()
    assert done == "UPDATE 1"


async def _turn(api: Api, key: str, session_id: str) -> dict[str, Any]:
    """Send a message and wait (bounded) for the turn's session_done."""
    sent = await api.request("POST", f"/v1/sessions/{session_id}/messages", key,
                             json={"content": "hi"})
    assert sent.status_code == 202, sent.text
    turn_id = sent.json()["event"]["data"]["turn_id"]
    async with asyncio.timeout(30):
        while True:
            events = (await api.request("GET", f"/v1/sessions/{session_id}/events?limit=500",
                                        key)).json()["data"]
            done = [e for e in events if e["type"] == "session_done"
                    and e["data"]["turn_id"] == turn_id]
            if done:
                assert len(done) == 1
                return dict(done[0]["data"])
            await asyncio.sleep(0.05)


async def _session(api: Api, key: str, agent_id: str, version: int | None = None) -> str:
    query = f"?agent_version={version}" if version else ""
    response = await api.request("POST", f"/v1/sessions{query}", key,
                                 json={"agent_id": agent_id})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_an_unreadable_version_breaks_only_its_agent_and_a_patch_repairs_it(
    api: Api, database_url: str,
) -> None:
    tenant = await api.tenant()
    key, owner = await api.key(tenant, "member"), await api.key(tenant, "owner")
    script = {"adapter": "scripted", "script": [{"text": "fine thanks"}]}
    other = (await api.request("POST", "/v1/agents", key,
                               json=config(name="other", model=script))).json()["id"]
    aid = (await api.request("POST", "/v1/agents", key, json=config(model=script))).json()["id"]
    assert (await api.request("PATCH", f"/v1/agents/{aid}", key,
                              json={"metadata": {"k": "short"}})).status_code == 200
    on_v1, on_v2 = await _session(api, key, aid, 1), await _session(api, key, aid, 2)
    on_other = await _session(api, key, other)
    await _corrupt(database_url, aid, 2,
                   _unreadable_version(2, model=script, metadata={"k": "v" * 2001}))

    got = await api.request("GET", f"/v1/agents/{aid}", key)
    assert got.status_code == 200, got.text
    agent = got.json()
    assert agent["version"] == 2 and agent["view"]["version"] == 2
    assert "version 2 cannot be read" in agent["broken"] and "metadata" in agent["broken"]
    assert agent["metadata"] == {}  # the last readable version's config is shown
    listed = (await api.request("GET", "/v1/agents", key)).json()["data"]
    assert {a["id"]: a["broken"] is None for a in listed} == {aid: False, other: True}
    versions = (await api.request("GET", f"/v1/agents/{aid}/versions", key)).json()["data"]
    assert [(v["version"], v["config"] is None, v["broken"] is None) for v in versions] == [
        (1, False, True), (2, True, False)]

    # No new session starts on the broken version; the rest of the tenant goes on working.
    error = assert_error(await api.request("POST", "/v1/sessions", key, json={"agent_id": aid}),
                         409, "conflict")
    assert error["details"] == {"field": "agent_id"} and "cannot be read" in error["message"]
    assert (await _turn(api, key, on_other))["status"] == "completed"
    assert (await _turn(api, key, on_v1))["status"] == "completed"
    board = (await api.request("POST", "/v1/boards", key, json={"name": "b"})).json()["id"]
    task = await api.request("POST", "/v1/tasks", key,
                             json={"board_id": board, "title": "t", "assignee_id": aid})
    assert task.status_code == 201, task.text
    budget = await api.request("PUT", f"/v1/budgets/agent:{aid}", owner,
                               json={"limits": {"day": {"tokens": 10**6}}})
    assert budget.status_code == 200, budget.text
    # A session pinned to it ends each turn failed, once, with why (never loops).
    for _ in range(2):
        done = await _turn(api, key, on_v2)
        assert done["status"] == "failed" and "cannot be read" in done["error"], done

    # A PATCH that keeps the bad field is refused, naming it; one replacing it repairs the agent.
    error = assert_error(await api.request("PATCH", f"/v1/agents/{aid}", key,
                                           json={"name": "renamed"}), 400, "invalid_request")
    assert error["details"]["field"].startswith("metadata"), error
    repaired = await api.request("PATCH", f"/v1/agents/{aid}", key,
                                 json={"metadata": {"k": "fixed"}})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["version"] == 3 and repaired.json()["broken"] is None
    agent = (await api.request("GET", f"/v1/agents/{aid}", key)).json()
    assert agent["broken"] is None and agent["metadata"] == {"k": "fixed"}
    assert agent["tools"][0]["name"] == "lookup"  # the rest comes from the stored version 2
    assert (await _turn(api, key, await _session(api, key, aid)))["status"] == "completed"
