"""Query parameters are validated at the edge, each error naming its field: every text
parameter of every route refuses NUL and other control characters and over-long values (never
an SQLSTATE in a message), id filters and cursors take only ids of their kind, ``types`` only
event type names (a typo used to give a stream silent for ever), and input quoted back in an
error message is cut short."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pytest

from api.app import ROUTES
from api.openapi import operations
from engine.events import EVENT_TYPES
from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error

OPERATIONS = operations(ROUTES)

FIREHOSES = ("/v1/events", "/v1/events/stream")

# Every text query parameter of every operation (integers have their own tests: query_int),
# but access_token, a credential (401, as in test_stream_tokens.py).
TEXT_PARAMS = sorted(
    (method, path, param.name) for (method, path), op in OPERATIONS.items()
    for param in op.query
    if param.schema["type"] in ("string", "array") and param.name != "access_token")


async def _world(api: Api) -> tuple[str, dict[str, str]]:
    """An owner key and a resource for each kind of path parameter."""
    key = await api.key(await api.tenant())
    agent = (await api.request("POST", "/v1/agents", key, json={"name": "a"})).json()["id"]
    session = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    board = (await api.request("POST", "/v1/boards", key, json={"name": "b"})).json()["id"]
    task = (await api.request("POST", "/v1/tasks", key,
                              json={"board_id": board, "title": "t"})).json()["id"]
    return key, {"agent_id": agent, "session_id": session, "board_id": board, "task_id": task,
                 "scope": "tenant"}


async def _ask(api: Api, key: str, world: dict[str, str], method: str, path: str,
               query: str) -> object:
    url = path.format(**world) + "?" + query
    body = {"content": "hi"} if path.endswith("/messages") else (
        {} if method == "POST" else None)
    token = ADMIN_TOKEN if OPERATIONS[(method, path)].auth == "admin" else key
    async with asyncio.timeout(30):  # a stream that starts instead would never end
        return await api.request(method, url, token, json=body)


def test_the_table_names_every_text_parameter() -> None:
    names = {name for _, _, name in TEXT_PARAMS}
    assert names == {"after", "agent_id", "session_id", "assignee_id", "board_id", "status",
                     "mode", "types", "stream_type", "actor", "group_by", "from", "to"}


@pytest.mark.parametrize("value", ["%00", "a%00b", "%1F", "%7F"], ids=["nul", "inner-nul",
                                                                       "unit-sep", "del"])
async def test_control_characters_in_any_text_parameter_are_400_naming_it(
    api: Api, value: str,
) -> None:
    key, world = await _world(api)
    for method, path, name in TEXT_PARAMS:
        response = await _ask(api, key, world, method, path, f"{name}={value}")
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": name}, (method, path, name)
        assert "refused" not in error["message"]  # not a driver's SQLSTATE
        assert not re.search(r"\b[0-9A-Z]{5}\b", error["message"]), error["message"]


async def test_an_over_long_parameter_is_400_naming_it_and_not_quoted_back(api: Api) -> None:
    key, world = await _world(api)
    long = "agt_" + "A" * 60_000
    for method, path, name in TEXT_PARAMS:
        response = await _ask(api, key, world, method, path, f"{name}={long}")
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": name}, (method, path, name)
        assert len(response.content) < 2000


async def test_id_filters_and_cursors_take_ids_of_their_kind(api: Api) -> None:
    key, world = await _world(api)
    foreign = "tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ"  # an id, of no list's kind but tasks'
    for path, name in (("/v1/approvals", "session_id"), ("/v1/approvals", "after"),
                       ("/v1/tasks", "assignee_id"), ("/v1/tasks", "board_id"),
                       ("/v1/usage", "agent_id"), ("/v1/usage", "session_id"),
                       ("/v1/sessions", "agent_id"), ("/v1/sessions", "after"),
                       ("/v1/agents", "after"), ("/v1/boards", "after"),
                       ("/v1/budgets", "after"), ("/v1/api_keys", "after"),
                       (f"/v1/agents/{world['agent_id']}/tokens", "after")):
        response = await api.request("GET", f"{path}?{name}={foreign}", key)
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": name}, (path, name)
    # ids of the right kind filter (nothing here), and an empty value is an absent one
    for query in (f"session_id={world['session_id']}", "after=", "session_id="):
        listed = await api.request("GET", f"/v1/approvals?{query}", key)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == []
    assert (await api.request("GET", "/v1/budgets?after=agent:agt_01HZZZZZZZZZZZZZZZZZZZZZZZ",
                              key)).status_code == 200


@pytest.mark.parametrize("path", FIREHOSES)
@pytest.mark.parametrize("types", ["%00", "task_creatd", "task_created,", ",task_created",
                                   "task_created,,user_message", "task_created, user_message",
                                   "TASK_CREATED"])
async def test_types_names_only_event_types(api: Api, path: str, types: str) -> None:
    key = await api.key(await api.tenant())
    async with asyncio.timeout(30):  # it used to start a stream that never ends
        response = await api.request("GET", f"{path}?types={types}", key)
    error = assert_error(response, 400, "invalid_request")
    assert error["details"] == {"field": "types"}


@pytest.mark.parametrize("path", FIREHOSES)
async def test_stream_type_is_one_of_the_stream_types(api: Api, path: str) -> None:
    key = await api.key(await api.tenant())
    for value in ("%00", "sessions", "x" * 300):
        response = await api.request("GET", f"{path}?stream_type={value}", key)
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": "stream_type"}


async def test_every_event_type_is_a_valid_filter(api: Api) -> None:
    key = await api.key(await api.tenant())
    every = ",".join(sorted(EVENT_TYPES))
    listed = await api.request("GET", f"/v1/events?types={every}&stream_type=session", key)
    assert listed.status_code == 200, listed.text


async def test_input_quoted_in_an_error_is_cut_short(api: Api) -> None:
    key = await api.key(await api.tenant())
    huge = "x" * 60_000
    for method, path, body in (("GET", f"/v1/agents/{huge}", None),
                               ("GET", f"/v1/sessions/ses_{huge}", None),
                               ("GET", f"/v1/nothing/{huge}", None),
                               ("POST", "/v1/approvals/apr_01HZZZZZZZZZZZZZZZZZZZZZZZ",
                                {"decision": huge})):
        response = await api.request(method, quote(path), key, json=body)
        assert 400 <= response.status_code < 500, response.text[:200]
        message = response.json()["error"]["message"]
        assert len(message) < 300, message[:300]
        assert re.search(r"x{80,100}\.\.\.", message), message
