"""GET /v1/sessions/{id}/state?at=SEQ: the session folded as of any event, at several points of
a turn with an approval and a client tool; bad `at`, unknown and foreign sessions."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.helpers import (
    approved_client_call,
    assert_error,
    say,
    seq_of,
)


async def state(api: Api, key: str, sid: str, at: int | None = None) -> dict[str, Any]:
    path = f"/v1/sessions/{sid}/state" + (f"?at={at}" if at is not None else "")
    response = await api.request("GET", path, key)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_state_at_each_point_of_a_turn(api: Api) -> None:
    key, sid, events = await approved_client_call(api)
    last = events[-1]["seq"]

    created = await state(api, key, sid, 1)
    assert (created["at"], created["last_seq"], created["status"]) == (1, last, "idle")
    assert created["turns"] == [] and created["conversation"] == [] and created["current"] is None

    submitted = await state(api, key, sid, seq_of(events, "user_message"))
    assert submitted["status"] == "running" and submitted["current"] is None
    [queued] = submitted["queue"]
    assert queued["text"] == "look up x" and not queued["interrupted"]
    [turn] = submitted["turns"]
    assert (turn["number"], turn["status"], turn["turn_id"]) == (1, "queued", queued["turn_id"])

    # Inside the model call, after its first word: the open message with its text so far.
    streaming = await state(api, key, sid, seq_of(events, "message_delta"))
    message = streaming["current"]["open_message"]
    assert message["text"] == "let " and message["tool_use_ids"] == []
    assert streaming["turns"][0]["status"] == "running" and streaming["queue"] == []
    assert [m["role"] for m in streaming["conversation"]] == ["user"]

    # The call stopped: a human must decide, the client may not answer yet.
    stopped = await state(api, key, sid, seq_of(events, "message_stop"))
    current = stopped["current"]
    assert stopped["status"] == "requires_action" and current["open_message"] is None
    assert current["last_stop"] == "tool_use" and current["model_calls"] == 1
    [call] = current["tool_calls"]
    assert (call["tool_use_id"], call["name"], call["input"], call["executor"],
            call["approval"]) == ("toolu_0_0", "lookup", {"word": "x"}, "client", "pending")
    assert current["pending_tool_use_ids"] == []
    [approval] = current["approvals"]
    assert approval["decision"] == "pending"
    assert current["waiting_on_approvals"] == [approval["approval_id"]]
    assistant = stopped["conversation"][1]
    assert assistant["text"] == "let me look"
    assert assistant["tool_calls"] == [
        {"tool_use_id": "toolu_0_0", "name": "lookup", "input": {"word": "x"}}]
    assert stopped["usage"]["output_tokens"] == 3 and stopped["model_calls"] == 1

    approved = await state(api, key, sid, seq_of(events, "approval_resolved"))
    current = approved["current"]
    assert approved["status"] == "requires_action"
    assert current["pending_tool_use_ids"] == ["toolu_0_0"]
    assert current["approvals"][0]["decision"] == "approve"
    assert current["waiting_on_approvals"] == []

    answered = await state(api, key, sid, seq_of(events, "tool_result"))
    assert answered["status"] == "running" and answered["current"]["tool_calls"] == []
    assert answered["conversation"][-1] == {
        "role": "tool", "text": "x is a letter", "tool_calls": [], "tool_use_id": "toolu_0_0",
        "is_error": False}

    now = await state(api, key, sid)
    assert now == await state(api, key, sid, last)
    assert now["at"] == last and now["status"] == "idle" and now["current"] is None
    [turn] = now["turns"]
    assert (turn["status"], turn["model_calls"], turn["ended_seq"]) == ("completed", 2, last)
    assert turn["tokens"] == now["usage"]["input_tokens"] + now["usage"]["output_tokens"]
    assert turn["cost_nanos"] == now["cost_nanos"]
    assert [m["role"] for m in now["conversation"]] == ["user", "assistant", "tool", "assistant"]
    assert now["conversation"][-1]["text"] == "found it"


async def test_a_bad_at_is_400_and_unknown_or_foreign_sessions_404(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    await say(api, key, sid, "hi")  # a session without an agent: 2 events
    for at in ("0", "3", "-1", "x", "99999999999999999999", "9" * 5000):
        error = assert_error(await api.request("GET", f"/v1/sessions/{sid}/state?at={at}", key),
                             400, "invalid_request")
        assert error["details"]["field"] == "at"
    at_2 = await state(api, key, sid, 2)  # recorded: no turn queued, it is conversation
    assert at_2["queue"] == [] and at_2["conversation"][0]["text"] == "hi"

    assert_error(await api.request("GET", "/v1/sessions/ses_nothing/state", key), 404,
                 "not_found")
    assert_error(await api.request("GET", "/v1/sessions/ses_01JAAAAAAAAAAAAAAAAAAAAAAA/state",
                                   key), 404, "not_found")
    other = await api.key(await api.tenant("other"), "owner")
    foreign = assert_error(await api.request("GET", f"/v1/sessions/{sid}/state?at=1", other),
                           404, "not_found")
    assert sid in foreign["message"]

async def test_a_viewer_reads_the_state(api: Api) -> None:
    tenant = await api.tenant()
    key, viewer = await api.key(tenant, "member"), await api.key(tenant, "viewer")
    sid = (await api.request("POST", "/v1/sessions", key, json={"title": "t"})).json()["id"]
    got = await state(api, viewer, sid)
    assert (got["at"], got["title"], got["agent_id"], got["status"]) == (1, "t", None, "idle")
