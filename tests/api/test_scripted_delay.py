"""A scripted step's ``delay`` holds a worker slot while it sleeps, so it is bounded: at most
10 s per word and 60 s for the step in all, on create and on PATCH (400 naming the field,
nothing appended)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api


def _model(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"adapter": "scripted", "script": [{"text": "fine"}, *steps]}


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize("step", [
    {"text": "one", "delay": 10.5},           # over the per-word bound
    {"text": _words(7), "delay": 10},          # 70 s in all
    {"text": _words(601), "delay": 0.1},       # 60.1 s in all
])
async def test_a_delay_past_the_bounds_is_refused_naming_the_field(
    api: Api, step: dict[str, Any],
) -> None:
    key = await api.key(await api.tenant(), "member")
    created = await api.request("POST", "/v1/agents", key,
                                json={"name": "slow", "model": _model(step)})
    assert created.status_code == 400, created.text
    error = created.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["details"]["field"] == "model.script[1].delay"

    agent = await api.request("POST", "/v1/agents", key, json={"name": "ok", "model": _model()})
    assert agent.status_code == 201, agent.text
    path = f"/v1/agents/{agent.json()['id']}"
    patched = await api.request("PATCH", path, key, json={"model": _model(step)})
    assert patched.status_code == 400, patched.text
    assert patched.json()["error"]["details"]["field"] == "model.script[1].delay"
    assert (await api.request("GET", path, key)).json()["version"] == 1  # nothing appended


async def test_a_delay_within_the_bounds_is_taken(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    for step in ({"text": "one", "delay": 10}, {"text": _words(6), "delay": 10},
                 {"text": _words(600), "delay": 0.1}, {"delay": 10}):
        created = await api.request("POST", "/v1/agents", key,
                                    json={"name": "slow", "model": _model(step)})
        assert created.status_code == 201, created.text
