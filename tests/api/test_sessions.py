"""The first session endpoints, end to end through the store."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.helpers import assert_error


async def test_create_get_message_and_page_events(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    created = await api.request("POST", "/v1/sessions", key,
                                json={"title": "demo", "metadata": {"k": "v"}})
    assert created.status_code == 201
    session = created.json()
    assert session["status"] == "idle" and session["title"] == "demo"
    assert int(created.headers["spool-position"]) >= 1
    sid = session["id"]
    for text in ["one", "two", "three"]:
        sent = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                 json={"content": text})
        assert sent.status_code == 202
        event = sent.json()["event"]
        assert event["type"] == "user_message"
        assert event["data"]["content"] == [{"type": "text", "text": text}]
        assert int(sent.headers["spool-position"]) == event["position"]
    page = (await api.request("GET", f"/v1/sessions/{sid}/events?limit=2", key)).json()
    assert [e["seq"] for e in page["data"]] == [1, 2]
    assert page["has_more"] is True and page["next_cursor"] == "2"
    rest = (await api.request("GET", f"/v1/sessions/{sid}/events?after=2", key)).json()
    assert [e["seq"] for e in rest["data"]] == [3, 4]
    assert rest["has_more"] is False and rest["next_cursor"] is None
    assert rest["data"][0]["meta"]["actor"].startswith("key_")
    got = (await api.request("GET", f"/v1/sessions/{sid}", key)).json()
    assert got["last_seq"] == 4 and got["metadata"] == {"k": "v"}


async def test_another_tenants_session_is_404(api: Api) -> None:
    key_a = await api.key(await api.tenant("a"), "member")
    key_b = await api.key(await api.tenant("b"), "member")
    sid = (await api.request("POST", "/v1/sessions", key_a, json={})).json()["id"]
    for method, path, body in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/sessions/{sid}/events", None),
        ("POST", f"/v1/sessions/{sid}/messages", {"content": "hi"}),
    ]:
        assert_error(await api.request(method, path, key_b, json=body), 404, "not_found")
    assert_error(await api.request("GET", "/v1/sessions/ses_nope", key_a), 404, "not_found")


async def test_idempotency_key_returns_the_first_result(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    headers = {"Idempotency-Key": "create-1"}
    first = await api.request("POST", "/v1/sessions", key, json={}, headers=headers)
    again = await api.request("POST", "/v1/sessions", key, json={}, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    sid = first.json()["id"]
    headers = {"Idempotency-Key": "msg-1"}
    one = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                            json={"content": "hi"}, headers=headers)
    two = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                            json={"content": "hi"}, headers=headers)
    assert one.json() == two.json()
    events = (await api.request("GET", f"/v1/sessions/{sid}/events", key)).json()["data"]
    assert [e["type"] for e in events] == ["session_created", "user_message"]


async def test_bad_message_bodies_are_named(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    for body, field in [({}, "content"), ({"content": ""}, "content"),
                        ({"content": [{"type": "image"}]}, "content[0].type"),
                        ({"content": "hi", "extra": 1}, "extra")]:
        response = await api.request("POST", f"/v1/sessions/{sid}/messages", key, json=body)
        error = assert_error(response, 422, "invalid_request")
        assert error["details"]["field"] == field, error
    response = await api.request("GET", f"/v1/sessions/{sid}/events?after=-1", key)
    assert_error(response, 400, "invalid_request")


async def test_nul_in_any_stored_text_is_422_naming_the_field(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    for body, field in [({"title": "a\u0000"}, "title"), ({"agent_id": "\u0000"}, "agent_id"),
                        ({"metadata": {"k\u0000": "v"}}, "metadata"),
                        ({"metadata": {"k": "v\u0000"}}, "metadata[...]")]:
        response = await api.request("POST", "/v1/sessions", key, json=body)
        assert assert_error(response, 422, "invalid_request")["details"] == {"field": field}
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    for body, field in [({"content": "hi\u0000"}, "content"),
                        ({"content": [{"type": "text", "text": "\u0000"}]}, "content[0].text")]:
        response = await api.request("POST", f"/v1/sessions/{sid}/messages", key, json=body)
        assert assert_error(response, 422, "invalid_request")["details"] == {"field": field}
    events = (await api.request("GET", f"/v1/sessions/{sid}/events", key)).json()["data"]
    assert [e["type"] for e in events] == ["session_created"]


async def test_an_after_beyond_bigint_is_400(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    response = await api.request("GET", f"/v1/sessions/{sid}/events?after={2**63}", key)
    assert assert_error(response, 400, "invalid_request")["details"] == {"field": "after"}
    largest = await api.request("GET", f"/v1/sessions/{sid}/events?after={2**63 - 1}", key)
    assert largest.status_code == 200 and largest.json()["data"] == []


async def test_query_integers_are_plain_ascii_digits(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    for raw in [" 1", "1_0", "١٢", "+1", "1.0"]:
        response = await api.request("GET", f"/v1/sessions/{sid}/events", key,
                                     params={"after": raw})
        assert assert_error(response, 400, "invalid_request")["details"] == {"field": "after"}
