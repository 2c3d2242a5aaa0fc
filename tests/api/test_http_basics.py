"""The HTTP skeleton: the error envelope for every kind of failure, request ids, health."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message
from structlog.testing import capture_logs

from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error


async def test_unknown_route_is_404_envelope(api: Api) -> None:
    assert_error(await api.request("GET", "/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_envelope(api: Api) -> None:
    response = await api.request("PUT", "/v1/tenants", ADMIN_TOKEN)
    assert_error(response, 405, "invalid_request")
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1/agents", "GET, HEAD, POST"),  # two Routes, one path
    ("/v1/agents/agt_x", "GET, HEAD, PATCH"),
    ("/v1/agents/agt_x/tokens/tok_x", "DELETE"),
])
async def test_a_405_allows_every_method_the_path_serves(api: Api, path: str,
                                                         allowed: str) -> None:
    response = await api.request("OPTIONS", path, ADMIN_TOKEN)
    assert_error(response, 405, "invalid_request")
    assert response.headers["allow"] == allowed


async def test_malformed_json_is_400(api: Api) -> None:
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, content=b"{nope",
                                 headers={"Content-Type": "application/json"})
    assert assert_error(response, 400, "invalid_request")["details"] == {"field": "body"}


async def test_wrong_content_type_is_415(api: Api) -> None:
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, content=b"name=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 415, "invalid_request")


async def test_body_over_limit_is_413_and_writes_nothing(api: Api) -> None:
    big = {"name": "x" * 2_000_000}
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, json=big)
    assert_error(response, 413, "invalid_request")
    listing = await api.request("GET", "/v1/tenants", ADMIN_TOKEN)
    assert listing.json()["data"] == []


async def test_invalid_field_is_422_naming_it(api: Api) -> None:
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, json={"name": 7})
    assert assert_error(response, 422, "invalid_request")["details"] == {"field": "name"}
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, json={"nme": "x"})
    assert assert_error(response, 422, "invalid_request")["details"] == {"field": "nme"}


async def test_request_id_is_generated_or_echoed(api: Api) -> None:
    generated = await api.request("GET", "/healthz")
    assert generated.headers["x-request-id"].startswith("req_")
    echoed = await api.request("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    failed = await api.request("GET", "/v1/nothing-here")
    assert failed.headers["x-request-id"].startswith("req_")


async def test_health_ready_and_metrics(api: Api) -> None:
    assert (await api.request("GET", "/healthz")).json() == {"status": "ok"}
    ready = await api.request("GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    await api.request("GET", "/healthz")
    metrics = await api.request("GET", "/metrics")
    assert metrics.status_code == 200
    assert 'spool_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text


async def test_list_limit_is_validated(api: Api) -> None:
    response = await api.request("GET", "/v1/tenants?limit=501", ADMIN_TOKEN)
    assert assert_error(response, 400, "invalid_request")["details"] == {"field": "limit"}
    response = await api.request("GET", "/v1/tenants?limit=abc", ADMIN_TOKEN)
    assert_error(response, 400, "invalid_request")


async def test_body_that_is_not_utf8_is_400(api: Api) -> None:
    response = await api.request("POST", "/v1/tenants", ADMIN_TOKEN, content=b'{"name":"\xff"}',
                                 headers={"Content-Type": "application/json"})
    assert assert_error(response, 400, "invalid_request")["details"] == {"field": "body"}


@pytest.mark.parametrize(("status", "type_"), [
    (400, "invalid_request"), (409, "invalid_request"), (418, "invalid_request"),
    (500, "internal_error"), (503, "internal_error"),
])
async def test_starlette_http_exceptions_keep_their_status(
    api: Api, status: int, type_: str
) -> None:
    async def fail(request: Request) -> Response:
        raise HTTPException(status, "secret detail" if status >= 500 else "told")

    api.app.router.routes.append(Route("/fail", fail))
    error = assert_error(await api.request("GET", "/fail"), status, type_)
    assert error["message"] == ("internal error" if status >= 500 else "told")


async def test_client_gone_mid_body_is_499_not_a_500(api: Api) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/tenants", "raw_path": b"/v1/tenants",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("spool.test", 80),
        "headers": [(b"host", b"spool.test"), (b"content-type", b"application/json"),
                    (b"authorization", f"Bearer {ADMIN_TOKEN}".encode())],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with capture_logs() as logs:
        await api.app(scope, receive, send)
    assert sent == []
    events = {(entry["event"], entry["log_level"]) for entry in logs}
    assert ("http.client_disconnected", "info") in events
    assert not {event for event, level in events if level in ("error", "critical")}
    metrics = (await api.request("GET", "/metrics")).text
    assert 'route="/v1/tenants",status="499"' in metrics
    assert 'status="500"' not in metrics


CURSOR_LISTS = ["/v1/agents", "/v1/sessions", "/v1/approvals", "/v1/boards", "/v1/tasks",
                "/v1/api_keys", "/v1/budgets", "/v1/usage", "/v1/events", "/v1/audit"]


async def test_an_empty_query_parameter_is_as_if_it_were_not_sent(api: Api) -> None:
    # One rule on every route (the document says it): `?after=` was the first page on the
    # position lists and a 400 on the id-cursor lists.
    key = await api.key(await api.tenant(), "owner")
    await api.request("POST", "/v1/boards", key, json={"name": "b"})
    for path in CURSOR_LISTS:
        plain = await api.request("GET", path, key)
        empty = await api.request("GET", f"{path}?after=&limit=&status=&min_position=", key)
        assert (empty.status_code, empty.json()) == (200, plain.json()), f"{path}: {empty.text}"
    tenants = await api.request("GET", "/v1/tenants?after=", ADMIN_TOKEN)
    assert tenants.status_code == 200, tenants.text


async def test_no_credential_reaches_the_log(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    # docs/SECURITY.md: the access log has the method, the path without its query, the route,
    # the status; never a header or a credential, valid or not.
    key = await api.key(await api.tenant(), "owner")
    made = await api.request("POST", "/v1/api_keys", key, json={"name": "k", "role": "viewer"})
    shown = made.json()["key"]
    wrong = key[:-4] + "AAAA"
    for token in (key, shown, wrong, ADMIN_TOKEN, "spt_not_a_token", "garbage"):
        await api.request("GET", "/v1/agents", token)
        await api.request("GET", f"/v1/events/stream?access_token={token}")
    logged = capsys.readouterr().out
    assert "http.request" in logged
    for secret in (key, shown, wrong, ADMIN_TOKEN, key.split("_", 2)[2], "garbage"):
        assert secret not in logged


async def test_an_integral_number_is_an_integer(api: Api) -> None:
    # JSON has one number type and JSON Schema (the document) counts 2.0 as an integer:
    # schemathesis sent `"max_tokens_per_turn": 20497.0` and `"ttl_seconds": 350.0` (422 then).
    key = await api.key(await api.tenant(), "owner")
    made = await api.request("POST", "/v1/agents", key, json={
        "name": "a", "limits": {"max_turns": 2.0, "max_tokens_per_turn": 1e3},
        "model": {"adapter": "scripted", "params": {"temperature": 0.5}}})
    assert made.status_code == 201, made.text
    assert made.json()["limits"] == {"max_turns": 2, "max_tokens_per_turn": 1000}
    assert made.json()["model"]["params"] == {"temperature": 0.5}
    token = await api.request("POST", "/v1/stream_tokens", key, json={"ttl_seconds": 350.0})
    assert token.status_code == 201, token.text
    # a fraction is still no integer, and the error still names the field
    error = assert_error(await api.request("POST", "/v1/agents", key, json={
        "name": "b", "limits": {"max_turns": 2.5}}), 422, "invalid_request")
    assert error["details"]["field"] == "limits.max_turns"
