"""GET /v1/events (the tenant's log by position) and GET /v1/audit (who did what)."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.helpers import agent, assert_error, say, session, settle


async def test_the_log_page_and_the_audit_trail(api: Api) -> None:
    tenant = await api.tenant()
    key, other = await api.key(tenant, "member"), await api.key(await api.tenant("b"), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "hello there"}]))
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    await api.request("POST", "/v1/sessions", other, json={})  # another tenant's: never shown

    page = (await api.request("GET", "/v1/events?limit=3", key)).json()
    assert [e["type"] for e in page["data"]] == ["agent_created", "session_created",
                                                 "user_message"]
    assert page["has_more"] and page["next_cursor"] == str(page["data"][-1]["position"])
    rest = (await api.request("GET", f"/v1/events?after={page['next_cursor']}&limit=500",
                              key)).json()["data"]
    assert rest[-1]["type"] == "session_done" and not any(
        e["stream_id"] == sid and e["type"] == "session_created" for e in rest)
    only = (await api.request("GET", "/v1/events?stream_type=agent&types=agent_created",
                              key)).json()["data"]
    assert [e["type"] for e in only] == ["agent_created"]

    trail = (await api.request("GET", "/v1/audit?limit=500", key)).json()["data"]
    actions = [(e["action"], e["actor"][:4]) for e in trail]
    assert actions == [("agent_created", "key_"), ("session_created", "key_"),
                       ("user_message", "key_"), ("turn_started", "wrk_"),
                       ("spend_recorded", "wrk_"),  # money spent is; the reply's tokens not
                       ("session_done", "wrk_")]
    assert all(e["request_id"] for e in trail if e["actor"].startswith("key_"))
    mine = trail[0]["actor"]
    by_key = (await api.request("GET", f"/v1/audit?actor={mine}", key)).json()["data"]
    assert {e["actor"] for e in by_key} == {mine} and len(by_key) == 3

    for path, field in (("/v1/events?after=-1", "after"), ("/v1/events?stream_type=x",
                                                           "stream_type")):
        error = assert_error(await api.request("GET", path, key), 400, "invalid_request")
        assert error["details"]["field"] == field
