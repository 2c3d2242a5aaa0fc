"""/v1/agents end to end: versions, validation naming the field, archive, tenant isolation, and
sessions pinning a version."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.test_http_basics import assert_error

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
