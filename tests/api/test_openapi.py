"""The OpenAPI document: it describes every route and nothing else, agrees with what each
handler reads (body, query parameters, Idempotency-Key, role) and writes (Spool-Position,
statuses), is valid OpenAPI 3.1, is the committed docs/openapi.json, is served without
authentication, and real responses fit the schemas it declares for them."""

from __future__ import annotations

import copy
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.routing import Route

from api import auth, handlers
from api.app import ROUTES, create_app
from api.openapi import build, drift, operations, operations_of, render
from api.openapi.schemas import clean_descriptions
from api.operation import NDJSON
from engine.settings import Settings
from tests.api.conftest import Api
from tests.api.openapi_check import Checker
from tests.conftest import ADMIN_TOKEN
from tests.helpers import settle

OPERATIONS = operations(ROUTES)
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build(ROUTES)


def test_every_route_of_the_app_has_an_operation_and_every_operation_a_route() -> None:
    app = create_app(Settings())  # the engine is not started: only the route table is read
    missing = drift(app.routes)  # an Operation is declared with its route: none is without
    assert not missing, f"routes declared without an Operation (api/operation.py): {missing}"
    assert set(operations(app.routes)) == set(operations_of(app.routes))
    document = build(app.routes)
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert described == set(operations_of(app.routes))


def test_a_route_without_an_operation_fails_the_build() -> None:
    async def nothing() -> None: ...

    with pytest.raises(ValueError, match="undescribed"):
        build([*ROUTES, Route("/v1/nothing", nothing, methods=["GET", "DELETE"])])


def test_the_committed_document_is_the_generated_one(spec: dict[str, Any]) -> None:
    assert COMMITTED.read_bytes() == render(spec), (
        "docs/openapi.json is not what api/openapi generates: run `make openapi`")
    assert render(build(ROUTES)) == render(spec)  # and generating it is deterministic


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate_spec(spec)
    broken = copy.deepcopy(spec)
    broken["paths"]["/v1/agents"]["get"]["parameters"][-1]["in"] = "body"  # OpenAPI 2
    with pytest.raises(OpenAPIValidationError):  # the validator does look
        validate_spec(broken)
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_operation_ids_are_unique_and_errors_share_one_envelope(spec: dict[str, Any]) -> None:
    ops = [op for path in spec["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in ops]
    assert len(ids) == len(set(ids))
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for op in ops:
        for status, response in op["responses"].items():
            if status >= "400" and "$ref" in response:
                name = response["$ref"].rsplit("/", 1)[1]
                response = spec["components"]["responses"][name]
                assert response["content"]["application/json"]["schema"] == envelope
    assert spec["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorBody"}


# --- the table against the handlers' code ------------------------------------------------------

_QUERY = [re.compile(p) for p in (r'query_params\.get\("(\w+)"', r'\bparams\.get\("(\w+)"',
                                  r'query_(?:int|date|text|id|choice)\(request, "(\w+)"')]
# api/query.py's helpers for one parameter each
_QUERY_HELPERS = {"query_limit(request)": "limit", "cursor(request": "after",
                  "query_min_position(request)": "min_position",
                  "query_event_types(request)": "types",
                  "query_stream_type(request)": "stream_type"}


def _source(route: Route) -> str:
    """The handler's code, with that of the module's private helpers it calls (or passes on)
    and of the authentication helpers that read the request (``stream_reader``:
    ``access_token``)."""
    module = sys.modules[route.endpoint.__module__]
    source = inspect.getsource(route.endpoint)
    for name in set(re.findall(r"\b(_\w+)\b", source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper):
            source += inspect.getsource(helper)
    if "stream_reader(" in source:
        source += inspect.getsource(auth.stream_reader)
    return source + _shared_source(source)


def _shared_source(source: str) -> str:
    """The code of the shared request shapes (api/handlers.py) the handler calls, and of the
    private ones they call, with the body type it passes where the shape reads its body."""
    shared = ""
    for name in set(re.findall(r"\b(\w+)\(", source)):
        helper = getattr(handlers, name, None)
        if inspect.isfunction(helper) and helper.__module__ == handlers.__name__:
            code = inspect.getsource(helper)
            for private in set(re.findall(r"\b(_\w+)\(", code)):
                inner = getattr(handlers, private, None)
                if inspect.isfunction(inner):
                    code += inspect.getsource(inner)
            passed = re.findall(rf"\b{name}\(request, [^A-Z)]*?([A-Z]\w*)", source)
            if passed:
                code = re.sub(r"\b(?:body|patch)_type\b", passed[0], code)
            shared += code
    return shared


@pytest.mark.parametrize("key", sorted(OPERATIONS), ids=lambda key: " ".join(key))
def test_the_operation_says_what_its_handler_does(key: tuple[str, str]) -> None:
    route, op = operations_of(ROUTES)[key], OPERATIONS[key]
    source = _source(route)
    where = f"{' '.join(key)} ({route.endpoint.__module__}.{route.name})"

    query = {name for pattern in _QUERY for name in pattern.findall(source)}
    query |= {name for call, name in _QUERY_HELPERS.items() if call in source}
    assert {p.name for p in op.query} == query, f"{where}: query parameters"

    bodies = re.findall(r"(?:read_json|read_optional_json)\(request, ([A-Z]\w*)\)", source)
    bodies += ["str"] if "read_ndjson(request" in source else []  # an export's lines
    assert (op.body_media == NDJSON) == ("read_ndjson(request" in source), f"{where}: NDJSON"
    assert ([op.body.__name__] if op.body else []) == bodies, f"{where}: request body"
    assert op.body_optional == ("read_optional_json(request" in source), f"{where}: optional body"
    assert op.idempotent == ("idempotency_key(request)" in source), f"{where}: Idempotency-Key"
    assert (op.position is not None) == ("position_header(" in source), f"{where}: position"

    roles = re.findall(r'(?:tenant_of|writer|authenticate)\(request, "(\w+)"\)', source)
    auth = roles[0] if roles else "runtime" if "agent_runtime(request" in source else None
    assert op.auth == auth, f"{where}: authentication"

    written = {int(s) for s in re.findall(r"\b([25]0\d)\b", source)}
    declared = {op.status, *(also[0] for also in op.also)}
    assert written <= declared and op.status in (written or {200}), f"{where}: statuses"


# --- real responses against the schemas ---------------------------------------------------------
# (tests/api/conftest.py checks every response of every API test the same way, at teardown.)


async def test_served_without_authentication(api: Api, spec: dict[str, Any]) -> None:
    response = await api.request("GET", "/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == render(spec)
    assert (await api.request("GET", "/v1/openapi.json")).content == response.content


async def test_real_responses_fit_their_declared_schemas(api: Api, spec: dict[str, Any]) -> None:
    check = Checker(spec)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = check("/v1/tenants", await api.request(
        "POST", "/v1/tenants", ADMIN_TOKEN, json={"name": "acme"}))["id"]
    check("/v1/tenants", await api.request("GET", "/v1/tenants", ADMIN_TOKEN))
    key = check("/v1/api_keys", await api.client.post(
        "/v1/api_keys", json={"name": "k", "role": "owner"},
        headers={**admin, "Spool-Tenant": tenant}))["key"]
    check("/v1/api_keys", await api.request("GET", "/v1/api_keys", key))

    agent_body = {"name": "a", "model": {"adapter": "scripted", "script": [{"text": "hi there"}]},
                  "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}
    created = await api.request("POST", "/v1/agents", key, json=agent_body,
                                headers={"Idempotency-Key": "one"})
    agent = check("/v1/agents", created)["id"]
    position = created.headers["Spool-Position"]
    check("/v1/agents", await api.request("GET", f"/v1/agents?min_position={position}", key))
    check("/v1/agents/{agent_id}", await api.request("GET", f"/v1/agents/{agent}", key))
    check("/v1/agents/{agent_id}", await api.request(
        "PATCH", f"/v1/agents/{agent}", key, json={"system": "be brief"}))
    check("/v1/agents/{agent_id}/versions", await api.request(
        "GET", f"/v1/agents/{agent}/versions", key))
    token = check("/v1/agents/{agent_id}/tokens", await api.request(
        "POST", f"/v1/agents/{agent}/tokens", key))["token"]
    check("/v1/agents/{agent_id}/heartbeat", await api.request(
        "POST", f"/v1/agents/{agent}/heartbeat", token, json={"note": "up"}))

    session = check("/v1/sessions", await api.request(
        "POST", "/v1/sessions", key, json={"agent_id": agent, "title": "t"}))["id"]
    check("/v1/sessions/{session_id}/messages", await api.request(
        "POST", f"/v1/sessions/{session}/messages", key, json={"content": "hello"}))
    await settle(api, key, session, "idle")
    events = check("/v1/sessions/{session_id}/events", await api.request(
        "GET", f"/v1/sessions/{session}/events", key))["data"]
    assert {"turn_started", "message_delta", "spend_recorded", "session_done"} <= {
        e["type"] for e in events}  # every event's data fits EventData
    check("/v1/sessions", await api.request("GET", "/v1/sessions", key))
    check("/v1/sessions/{session_id}", await api.request("GET", f"/v1/sessions/{session}", key))
    check("/v1/sessions/{session_id}/queue", await api.request(
        "GET", f"/v1/sessions/{session}/queue", key))
    check("/v1/sessions/{session_id}/interrupt", await api.request(
        "POST", f"/v1/sessions/{session}/interrupt", key))
    check("/v1/events", await api.request("GET", "/v1/events?limit=500", key))
    check("/v1/audit", await api.request("GET", "/v1/audit", key))

    board = check("/v1/boards", await api.request(
        "POST", "/v1/boards", key, json={"name": "b"}))["id"]
    task = await api.request("POST", "/v1/tasks", key, json={
        "board_id": board, "title": "t", "assignee_id": agent, "due_at": "2030-01-01T00:00:00Z"})
    task_id = check("/v1/tasks", task)["id"]
    check("/v1/tasks/{task_id}/comments", await api.request(
        "POST", f"/v1/tasks/{task_id}/comments", key, json={"body": "c"}))
    position = task.headers["Spool-Position"]
    check("/v1/tasks", await api.request("GET", f"/v1/tasks?min_position={position}", key))
    check("/v1/boards/{board_id}/snapshot", await api.request(
        "GET", f"/v1/boards/{board}/snapshot?min_position={position}", key))
    check("/v1/tasks/{task_id}", await api.request(
        "PATCH", f"/v1/tasks/{task_id}", key, json={"status": "done"}))
    check("/v1/tasks/{task_id}", await api.request("DELETE", f"/v1/tasks/{task_id}", key))

    budget = await api.request("PUT", "/v1/budgets/tenant", key,
                               json={"limits": {"day": {"tokens": 1000, "usd": 1.5}}})
    check("/v1/budgets/{scope}", budget)
    check("/v1/budgets", await api.request("GET", "/v1/budgets", key))
    check("/v1/usage", await api.request("GET", "/v1/usage?group_by=model", key))
    check("/v1/budgets/{scope}", await api.request("DELETE", "/v1/budgets/tenant", key))

    # Errors: the shared envelope, with the statuses the operations declare.
    check("/v1/agents", await api.request("POST", "/v1/agents", key, json={"name": 7}))  # 422
    check("/v1/agents", await api.request("GET", "/v1/agents?limit=x", key))  # 400
    check("/v1/agents", await api.request("GET", "/v1/agents"))  # 401
    check("/v1/tenants", await api.request("GET", "/v1/tenants", key))  # 403
    check("/v1/sessions/{session_id}", await api.request(
        "GET", "/v1/sessions/ses_nothing", key))  # 404
    check("/v1/agents/{agent_id}/heartbeat", await api.request(
        "POST", f"/v1/agents/{agent}/heartbeat", key))  # 403: an API key
    check("/healthz", await api.request("GET", "/healthz"))
    check("/readyz", await api.request("GET", "/readyz"))
    statuses = {status for _, _, status in check.checked}
    assert {200, 201, 202, 400, 401, 403, 404, 422} <= statuses
    assert "spool_http_requests_total" in check("/metrics", await api.request("GET", "/metrics"))


def test_descriptions_do_not_depend_on_how_msgspec_passes_docstrings(
        spec: dict[str, Any]) -> None:
    # msgspec 0.22 kept a docstring's indentation inside descriptions, 0.23 dedents them.
    indented = {"description": "First line,\n    second line.", "items": [
        {"description": "a\n        b"}]}
    assert clean_descriptions(indented) == {
        "description": "First line,\nsecond line.", "items": [{"description": "a\nb"}]}

    def descriptions(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "description" and isinstance(value, str):
                    yield value
                else:
                    yield from descriptions(value)
        elif isinstance(node, list):
            for value in node:
                yield from descriptions(value)

    indented_lines = [text for text in descriptions(spec) if "\n " in text]
    assert not indented_lines
