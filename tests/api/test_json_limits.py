"""Free-form JSON in request bodies is capped in depth and size, with a 422 naming the field
(nested ~1000 deep it was a 500, a RecursionError in the decoder), and nothing is written."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error

DEPTH = 64  # SPOOL_MAX_JSON_DEPTH's default


def nested(levels: int) -> str:
    """JSON of ``levels`` nested objects and arrays."""
    return '{"a": ' * (levels - 1) + "[1]" + "}" * (levels - 1)


def agent_with(field: str, value: str) -> bytes:
    """An agent config with ``value`` (raw JSON) in one free-form field."""
    slot = "@@"
    config = {"name": "a", "model": {"params": {}, "script": [{"tool_calls": [
        {"name": "t", "input": {}}]}]}, "tools": [{"name": "t", "input_schema": {}}]}
    if field == "model.params":
        config["model"]["params"] = slot  # type: ignore[index]
    elif field == "tools[0].input_schema":
        config["tools"][0]["input_schema"] = slot  # type: ignore[index]
    else:
        config["model"]["script"][0]["tool_calls"][0]["input"] = slot  # type: ignore[index]
    return json.dumps(config).replace(f'"{slot}"', value).encode()


FIELDS = ["model.params", "tools[0].input_schema", "model.script[0].tool_calls[0].input"]


async def _post(api: Api, key: str, body: bytes, method: str = "POST",
                path: str = "/v1/agents") -> object:
    return await api.request(method, path, key, content=body,
                             headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("field", FIELDS)
async def test_free_form_json_nested_too_deep_is_422_naming_the_field(
    api: Api, field: str,
) -> None:
    key = await api.key(await api.tenant())
    for levels in (DEPTH + 1, 975, 990, 5000):
        error = assert_error(await _post(api, key, agent_with(field, nested(levels))), 422,
                             "invalid_request")
        assert error["details"] == {"field": field}, levels
        assert f"more than {DEPTH} levels" in error["message"]
    assert (await api.request("GET", "/v1/agents", key)).json()["data"] == []  # none written
    made = await _post(api, key, agent_with(field, nested(DEPTH)))
    assert made.status_code == 201, made.text  # at the cap: fine
    agent_id = made.json()["id"]
    patched = await _post(api, key, agent_with(field, nested(990))[:-1] + b"}",
                          method="PATCH", path=f"/v1/agents/{agent_id}")
    assert assert_error(patched, 422, "invalid_request")["details"] == {"field": field}
    versions = (await api.request("GET", f"/v1/agents/{agent_id}/versions", key)).json()
    assert len(versions["data"]) == 1


@pytest.mark.parametrize("field", FIELDS)
async def test_free_form_json_over_the_size_cap_is_422_naming_the_field(
    api: Api, field: str,
) -> None:
    key = await api.key(await api.tenant())
    big = json.dumps({"blob": "x" * 70_000})
    error = assert_error(await _post(api, key, agent_with(field, big)), 422, "invalid_request")
    assert error["details"] == {"field": field}
    assert "65536 bytes" in error["message"]
    fits = json.dumps({"blob": "x" * 60_000})
    assert (await _post(api, key, agent_with(field, fits))).status_code == 201


async def test_deep_json_anywhere_in_any_body_is_a_422_not_a_500(api: Api) -> None:
    key = await api.key(await api.tenant())
    deep = "[" * 5000 + "]" * 5000
    board = (await api.request("POST", "/v1/boards", key, json={"name": "b"})).json()["id"]
    for path, body, field in (
        ("/v1/agents", f'{{"name": {deep}}}', "name"),
        ("/v1/agents", f'{{"name": "a", "metadata": {{"k": {deep}}}}}', "metadata[...]"),
        ("/v1/sessions", f'{{"metadata": {deep}}}', "metadata"),
        ("/v1/tasks", f'{{"board_id": "{board}", "title": {deep}}}', "title"),
        ("/v1/tenants", deep, "body"),
    ):
        token = ADMIN_TOKEN if path == "/v1/tenants" else key
        response = await _post(api, token, body.encode(), path=path)
        error = assert_error(response, 422, "invalid_request")
        assert error["details"] == {"field": field}, path


async def test_brackets_inside_strings_are_text(api: Api) -> None:
    key = await api.key(await api.tenant())
    # at the cap (the scan runs: the body is deeper than it), with brackets in its strings
    text = json.dumps({"x": "[{" * 5000 + '\\"' + "}]" * 10, "y": ["]", "\\\\", "{"],
                       "deep": json.loads(nested(DEPTH - 1))})
    body = agent_with("model.params", text)
    made = await _post(api, key, body)
    assert made.status_code == 201, made.text
    assert made.json()["model"]["params"] == json.loads(text)
