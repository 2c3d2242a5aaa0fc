"""Request bodies are JSON or nothing: a route whose body is optional reads it whatever the
headers say (a body without a Content-Type is 415, never ignored), and a body that is not
``application/json`` is 415 on every route, before the route acts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from api.app import ROUTES
from api.openapi import operations
from tests.api.conftest import Api
from tests.helpers import assert_error

OPERATIONS = operations(ROUTES)

ANY_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


async def _session(api: Api, key: str) -> str:
    response = await api.request("POST", "/v1/sessions", key, json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _415(response) -> None:  # type: ignore[no-untyped-def]
    error = assert_error(response, 415, "invalid_request")
    assert error["details"] == {"field": "Content-Type"}


async def test_a_stream_token_body_without_a_content_type_is_415_not_a_wider_token(
    api: Api,
) -> None:
    key = await api.key(await api.tenant())
    sid = await _session(api, key)
    body = f'{{"session_id": "{sid}", "ttl_seconds": 10}}'.encode()
    _415(await api.request("POST", "/v1/stream_tokens", key, content=body))
    _415(await api.request("POST", "/v1/stream_tokens", key, content=body,
                           headers={"Content-Type": "text/plain"}))
    asked = await api.request("POST", "/v1/stream_tokens", key, content=body,
                              headers={"Content-Type": "application/json; charset=utf-8"})
    assert asked.status_code == 201, asked.text
    token = asked.json()
    assert token["session_id"] == sid
    ttl = datetime.fromisoformat(token["expires_at"]) - datetime.now(UTC)
    assert ttl.total_seconds() <= 10
    # no body at all: the defaults (the tenant's streams, 300 s)
    for headers in ({}, {"Content-Type": "application/json"}):
        default = await api.request("POST", "/v1/stream_tokens", key, headers=headers)
        assert default.status_code == 201, default.text
        assert default.json()["session_id"] is None


async def test_agent_token_and_heartbeat_bodies_without_a_content_type_are_415(
    api: Api,
) -> None:
    key = await api.key(await api.tenant())
    agent_id = (await api.request("POST", "/v1/agents", key, json={"name": "a"})).json()["id"]
    _415(await api.request("POST", f"/v1/agents/{agent_id}/tokens", key,
                           content=b'{"name": "ci runner"}'))
    named = await api.request("POST", f"/v1/agents/{agent_id}/tokens", key,
                              json={"name": "ci runner"})
    assert named.status_code == 201 and named.json()["name"] == "ci runner"
    unnamed = await api.request("POST", f"/v1/agents/{agent_id}/tokens", key)
    assert unnamed.status_code == 201 and unnamed.json()["name"] == "runtime"
    runtime = named.json()["token"]
    _415(await api.request("POST", f"/v1/agents/{agent_id}/heartbeat", runtime,
                           content=b'{"note": "up"}'))
    beat = await api.request("POST", f"/v1/agents/{agent_id}/heartbeat", runtime,
                             json={"note": "up"})
    assert beat.status_code == 202 and beat.json()["event"]["data"]["note"] == "up"
    silent = await api.request("POST", f"/v1/agents/{agent_id}/heartbeat", runtime)
    assert silent.status_code == 202 and "note" not in silent.json()["event"]["data"]


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"}],
                         ids=["none", "text", "form"])
async def test_a_body_that_is_not_json_is_415_on_every_route(
    api: Api, headers: dict[str, str],
) -> None:
    key = await api.key(await api.tenant())
    for method, path in OPERATIONS:
        url = re.sub(r"\{scope\}", "tenant", path)
        url = re.sub(r"\{(\w+)_id\}", lambda m: f"{m[1][:3]}_{ANY_ID}", url)
        response = await api.request(method, url, key, content=b"name=x", headers=headers)
        assert response.status_code == 415, f"{method} {path}: {response.text}"
        _415(response)
