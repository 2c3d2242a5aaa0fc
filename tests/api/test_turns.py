"""Turns end to end with the in-process worker and the scripted adapter: a reply streamed word by
word, client tools and requires_action, a second message (409, enqueue, interrupt), interrupts,
tool results (wrong, duplicate, late), a failing model call, and a worker that died mid-message."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.conftest import Api
from tests.helpers import (
    LOOKUP,
    agent,
    assert_error,
    cut_by_a_dead_worker,
    log,
    say,
    session,
    settle,
)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_a_turn_streams_the_reply_and_ends_completed(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "hello there"}]))
    sent = await say(api, key, sid, "hi")
    assert sent.status_code == 202, sent.text
    done = await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert types(events) == ["session_created", "user_message", "turn_started", "message_start",
                             "message_delta", "message_delta", "message_stop", "spend_recorded",
                             "session_done"]
    assert [e["data"]["text"] for e in events if e["type"] == "message_delta"] == [
        "hello ", "there"]
    stop = events[-3]["data"]
    assert stop["stop_reason"] == "end_turn"
    assert stop["usage"]["output_tokens"] == 2 and stop["usage"]["input_tokens"] == 1
    assert events[-1]["data"] == {"type": "session_done", "status": "completed",
                                  "turn_id": sent.json()["event"]["data"]["turn_id"]}
    assert done["usage"]["output_tokens"] == 2
    # Past the script's end the scripted model echoes.
    await say(api, key, sid, "again")
    await settle(api, key, sid, "idle")
    deltas = [e["data"]["text"] for e in await log(api, key, sid) if e["type"] == "message_delta"]
    assert "".join(deltas[2:]) == "You said: again"


async def test_client_tools_wait_for_results_and_a_second_message_needs_a_mode(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "spool"}}]},
              {"text": "found it"}, {"text": "second turn"}, {"text": "third turn"}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "look it up")
    waiting = await settle(api, key, sid, "requires_action")
    [tool_use_id] = waiting["pending_tool_use_ids"]
    assert tool_use_id == "toolu_0_0"

    error = assert_error(await say(api, key, sid, "another"), 409, "conflict")
    assert error["details"]["field"] == "mode"
    queued = await say(api, key, sid, "queued one", mode="enqueue")
    assert queued.status_code == 202
    got = (await api.request("GET", f"/v1/sessions/{sid}", key)).json()
    assert got["queued_turn_ids"] == [queued.json()["event"]["data"]["turn_id"]]

    path = f"/v1/sessions/{sid}/tool_results"
    error = assert_error(await api.request("POST", path, key, json={"results": [
        {"tool_use_id": "toolu_nope", "content": "x"}]}), 400, "invalid_request")
    assert error["details"]["field"] == "results[0].tool_use_id"
    answered = await api.request("POST", path, key, json={"results": [
        {"tool_use_id": tool_use_id, "content": "a reel"}]})
    assert answered.status_code == 202, answered.text
    assert_error(await api.request("POST", path, key, json={"results": [
        {"tool_use_id": tool_use_id, "content": "again"}]}), 409, "conflict")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    done = [e["data"]["status"] for e in events if e["type"] == "session_done"]
    assert done == ["completed", "completed"]
    texts = "".join(e["data"]["text"] for e in events if e["type"] == "message_delta")
    assert texts == "found itsecond turn"
    tool_use = next(e for e in events if e["type"] == "tool_use")["data"]
    assert tool_use["input"] == {"word": "spool"} and tool_use["executor"] == "client"


async def test_interrupt_cancels_the_turn_and_refuses_a_late_tool_result(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}, {"text": "later"}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "go")
    waiting = await settle(api, key, sid, "requires_action")
    stopped = await api.request("POST", f"/v1/sessions/{sid}/interrupt", key)
    assert stopped.status_code == 202 and stopped.json()["event"]["type"] == "session_interrupted"
    await settle(api, key, sid, "idle")
    again = await api.request("POST", f"/v1/sessions/{sid}/interrupt", key)
    assert again.status_code == 200 and again.json() == {"event": None}  # nothing running
    late = await api.request("POST", f"/v1/sessions/{sid}/tool_results", key, json={
        "results": [{"tool_use_id": waiting["pending_tool_use_ids"][0], "content": "late"}]})
    assert_error(late, 409, "conflict")
    events = await log(api, key, sid)
    assert [e["data"]["status"] for e in events if e["type"] == "session_done"] == ["cancelled"]
    assert "tool_result" not in types(events)


async def test_mode_interrupt_stops_the_running_turn_first(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}, {"text": "new"}]
    sid = await session(api, key, await agent(api, key, script))
    first = (await say(api, key, sid, "first")).json()["event"]["data"]["turn_id"]
    await settle(api, key, sid, "requires_action")
    second = await say(api, key, sid, "instead", mode="interrupt")
    assert second.status_code == 202
    await settle(api, key, sid, "idle")
    done = [(e["data"]["turn_id"], e["data"]["status"]) for e in await log(api, key, sid)
            if e["type"] == "session_done"]
    assert done == [(first, "cancelled"),
                    (second.json()["event"]["data"]["turn_id"], "completed")]


async def test_bad_tool_input_is_answered_with_an_error_for_the_model(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": 7}}]}, {"text": "sorry"}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "go")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    result = next(e for e in events if e["type"] == "tool_result")["data"]
    assert result["is_error"] and "word" in result["content"][0]["text"]
    assert [e["data"]["status"] for e in events if e["type"] == "session_done"] == ["completed"]


async def test_a_failing_model_fails_the_turn_and_the_session_stays_usable(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"error": "boom"}, {"text": "fine"}]))
    await say(api, key, sid, "one")
    await settle(api, key, sid, "idle")
    await say(api, key, sid, "two")
    await settle(api, key, sid, "idle")
    done = [e["data"] for e in await log(api, key, sid) if e["type"] == "session_done"]
    assert done[0]["status"] == "failed" and "boom" in done[0]["error"]
    assert done[1]["status"] == "completed"


async def test_limits_stop_a_turn_that_keeps_calling_tools(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    call = {"tool_calls": [{"name": "lookup", "input": {"word": 1}}]}  # invalid: auto-answered
    sid = await session(api, key, await agent(api, key, [call] * 5, limits={"max_turns": 2}))
    await say(api, key, sid, "loop")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert types(events).count("message_stop") == 2
    done = events[-1]["data"]
    assert done["status"] == "failed" and "max_turns" in done["error"]


async def test_a_session_without_an_agent_only_records(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    for text in ["a", "b"]:
        assert (await say(api, key, sid, text)).status_code == 202
    await asyncio.sleep(0.5)
    assert types(await log(api, key, sid)) == ["session_created", "user_message", "user_message"]


async def test_a_turn_cut_by_a_dead_worker_is_closed_and_finished_by_another(api: Api) -> None:
    """A worker took the turn, streamed part of a message, and died (its lease expires): the
    next worker closes the message as interrupted and runs the model again."""
    key, sid = await cut_by_a_dead_worker(api)
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert types(events)[2:] == ["turn_started", "message_start", "message_delta",
                                 "message_stop", "message_start", "message_delta",
                                 "message_delta", "message_stop", "spend_recorded",
                                 "session_done"]
    closed = events[5]["data"]
    assert (closed["message_id"], closed["stop_reason"]) == ("msg_dead", "interrupted")
    assert events[-1]["data"]["status"] == "completed"
    assert "".join(e["data"]["text"] for e in events[7:9]) == "complete reply"


async def test_a_stopping_worker_finishes_its_step_and_hands_the_session_back_at_once(
    api: Api,
) -> None:
    """spool serve's stop: the model call in progress completes (message_stop and its spend
    are appended), no next step starts, and the lease is given back at once (not when it runs
    out), so the next worker ends the turn, once, without asking the model again."""
    engine = api.app.state.engine
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [
        {"text": "one two three four five six", "delay": 0.2}]))
    turn_id = (await say(api, key, sid, "hi")).json()["event"]["data"]["turn_id"]
    async with asyncio.timeout(10):
        while "message_delta" not in types(await log(api, key, sid)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await engine.worker.stop(grace=30)
    events = await log(api, key, sid)
    assert types(events)[-2:] == ["message_stop", "spend_recorded"], types(events)
    assert events[-2]["data"]["stop_reason"] == "end_turn"
    assert "session_done" not in types(events)
    async with engine._pool.acquire() as conn:
        lease = await conn.fetchrow(
            "SELECT lease_owner, lease_expires <= now() AS free,"
            " wanted_position > done_position AS wanted FROM session_runs"
            " WHERE session_id = $1", sid)
    assert lease["lease_owner"] is None and lease["free"] is not False and lease["wanted"]
    engine.worker.start()
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert types(events).count("message_start") == 1
    done = [e["data"] for e in events if e["type"] == "session_done"]
    assert done == [{"type": "session_done", "turn_id": turn_id, "status": "completed"}]


async def _waiting_for_approval(api: Api, key: str, script: list[dict[str, Any]]
                                ) -> tuple[str, dict[str, Any]]:
    """A session whose turn waits for a human to approve its lookup: its id and its state."""
    sid = await session(api, key, await agent(
        api, key, script, tools=[{**LOOKUP, "requires_approval": True}]))
    await say(api, key, sid, "go")
    return sid, await settle(api, key, sid, "requires_action")


async def test_a_call_needing_approval_waits_for_a_human_then_for_the_client(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "spool"}}]}, {"text": "ok"}]
    sid, waiting = await _waiting_for_approval(api, key, script)
    assert waiting["pending_tool_use_ids"] == []  # not the client's turn yet: a human decides
    pending = (await api.request("GET", "/v1/approvals?status=pending", key)).json()["data"]
    assert [(a["tool_name"], a["input"], a["session_id"]) for a in pending] == [
        ("lookup", {"word": "spool"}, sid)]
    approval_id = pending[0]["id"]
    decided = await api.request("POST", f"/v1/approvals/{approval_id}", key,
                                json={"decision": "approve"})
    assert decided.status_code == 202, decided.text
    assert_error(await api.request("POST", f"/v1/approvals/{approval_id}", key,
                                   json={"decision": "deny"}), 409, "conflict")
    waiting = await settle(api, key, sid, "requires_action")
    assert waiting["pending_tool_use_ids"] == ["toolu_0_0"]
    await api.request("POST", f"/v1/sessions/{sid}/tool_results", key,
                      json={"results": [{"tool_use_id": "toolu_0_0", "content": "found"}]})
    await settle(api, key, sid, "idle")
    got = (await api.request("GET", f"/v1/approvals/{approval_id}", key)).json()
    assert got["status"] == "approved" and got["resolved_by"].startswith("key_")
    assert types(await log(api, key, sid))[-1] == "session_done"


async def test_a_denied_call_is_refused_and_the_model_goes_on(api: Api) -> None:
    tenant = await api.tenant()
    key, other = await api.key(tenant, "member"), await api.key(await api.tenant("b"), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}, {"text": "fine"}]
    sid, _ = await _waiting_for_approval(api, key, script)
    [approval] = (await api.request("GET", f"/v1/approvals?session_id={sid}", key)).json()["data"]
    assert_error(await api.request("POST", f"/v1/approvals/{approval['id']}", other,
                                   json={"decision": "deny"}), 404, "not_found")
    error = assert_error(await api.request("POST", f"/v1/approvals/{approval['id']}", key,
                                           json={"decision": "maybe"}), 422, "invalid_request")
    assert error["details"]["field"] == "decision"
    await api.request("POST", f"/v1/approvals/{approval['id']}", key,
                      json={"decision": "deny", "reason": "not today"})
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    result = next(e for e in events if e["type"] == "tool_result")["data"]
    assert result["is_error"] and "denied" in result["content"][0]["text"]
    assert events[-1]["data"]["status"] == "completed"
    got = (await api.request("GET", f"/v1/approvals/{approval['id']}", key)).json()
    assert (got["status"], got["reason"]) == ("denied", "not today")


async def test_an_interrupted_turn_cancels_its_pending_approval(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}]
    sid, _ = await _waiting_for_approval(api, key, script)
    await api.request("POST", f"/v1/sessions/{sid}/interrupt", key)
    await settle(api, key, sid, "idle")
    [approval] = (await api.request("GET", f"/v1/approvals?session_id={sid}", key)).json()["data"]
    assert approval["status"] == "cancelled"
    assert_error(await api.request("POST", f"/v1/approvals/{approval['id']}", key,
                                   json={"decision": "approve"}), 409, "conflict")


async def test_memory_tools_run_on_the_server_and_are_shared_by_the_agents_sessions(
    api: Api,
) -> None:
    key = await api.key(await api.tenant(), "member")
    tools = [{"name": "memory_write", "executor": "server"},
             {"name": "memory_read", "executor": "server"}]
    script = [
        {"tool_calls": [{"name": "memory_write", "input": {"key": "colour", "value": "blue"}}]},
        {"text": "saved"},
        {"tool_calls": [{"name": "memory_read", "input": {"key": "colour"}},
                        {"name": "memory_read", "input": {"key": "size"}}]},
        {"text": "read"},
    ]
    agent_id = await agent(api, key, script, tools=tools)
    first = await session(api, key, agent_id)
    await say(api, key, first, "remember blue")
    await settle(api, key, first, "idle")
    results = [e["data"] for e in await log(api, key, first) if e["type"] == "tool_result"]
    assert [(r["content"][0]["text"], r.get("is_error", False)) for r in results] == [
        ("stored", False)]
    # Another session of the agent (steps count per session: it starts at the script's top,
    # so give it its own agent version whose script reads).
    patched = await api.request("PATCH", f"/v1/agents/{agent_id}", key,
                                json={"model": {"script": script[2:]}})
    assert patched.status_code == 200, patched.text
    second = await session(api, key, agent_id)
    await say(api, key, second, "what colour?")
    await settle(api, key, second, "idle")
    results = [e["data"] for e in await log(api, key, second) if e["type"] == "tool_result"]
    assert [r["content"][0]["text"] for r in results] == ["blue", "(nothing stored under 'size')"]


async def test_retried_posts_with_an_idempotency_key_return_the_first_result(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "a"}}]},
              {"tool_calls": [{"name": "lookup", "input": {"word": "b"}}]}, {"text": "done"}]
    sid = await session(api, key, await agent(
        api, key, script, tools=[LOOKUP, {**LOOKUP, "name": "ask", "requires_approval": True}]))
    once = {"Idempotency-Key": "msg-1"}
    first = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                              json={"content": "go"}, headers=once)
    await settle(api, key, sid, "requires_action")  # the turn runs: a plain retry would be 409
    again = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                              json={"content": "go"}, headers=once)
    assert again.status_code == 202 and again.json() == first.json()

    path, body = f"/v1/sessions/{sid}/tool_results", {
        "results": [{"tool_use_id": "toolu_0_0", "content": "A"}]}
    results = [await api.request("POST", path, key, json=body, headers={"Idempotency-Key": "r"})
               for _ in range(2)]
    assert results[0].json() == results[1].json() and results[1].status_code == 202
    await settle(api, key, sid, "requires_action")
    await api.request("POST", path, key, json={
        "results": [{"tool_use_id": "toolu_1_0", "content": "B"}]})
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    assert types(events).count("user_message") == 1
    assert [e["data"]["tool_use_id"] for e in events if e["type"] == "tool_result"] == [
        "toolu_0_0", "toolu_1_0"]


async def test_a_retried_decision_returns_the_first_even_once_decided(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "a"}}]}, {"text": "ok"}]
    sid, _ = await _waiting_for_approval(api, key, script)
    [approval] = (await api.request("GET", "/v1/approvals?status=pending", key)).json()["data"]
    decide = [await api.request("POST", f"/v1/approvals/{approval['id']}", key,
                                json={"decision": "deny"}, headers={"Idempotency-Key": "d"})
              for _ in range(2)]
    assert decide[1].status_code == 202 and decide[0].json() == decide[1].json()
    await settle(api, key, sid, "idle")
    assert types(await log(api, key, sid)).count("approval_resolved") == 1


async def test_queued_turns_are_listed_and_removable(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "a"}}]}, {"text": "ok"},
              {"text": "kept"}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "first")
    await settle(api, key, sid, "requires_action")
    removed = (await say(api, key, sid, "drop me", mode="enqueue")).json()["event"]["data"]
    kept = (await say(api, key, sid, "keep me", mode="enqueue")).json()["event"]["data"]
    queue = (await api.request("GET", f"/v1/sessions/{sid}/queue", key)).json()["data"]
    assert [(q["turn_id"], q["content"][0]["text"]) for q in queue] == [
        (removed["turn_id"], "drop me"), (kept["turn_id"], "keep me")]
    gone = await api.request("DELETE", f"/v1/sessions/{sid}/queue/{removed['turn_id']}", key)
    assert gone.status_code == 202, gone.text
    assert_error(await api.request("DELETE", f"/v1/sessions/{sid}/queue/{removed['turn_id']}",
                                   key), 404, "not_found")
    running = (await api.request("GET", f"/v1/sessions/{sid}", key)).json()["current_turn_id"]
    assert_error(await api.request("DELETE", f"/v1/sessions/{sid}/queue/{running}", key),
                 409, "conflict")
    await api.request("POST", f"/v1/sessions/{sid}/tool_results", key,
                      json={"results": [{"tool_use_id": "toolu_0_0", "content": "A"}]})
    await settle(api, key, sid, "idle")
    done = {e["data"]["turn_id"]: e["data"]["status"] for e in await log(api, key, sid)
            if e["type"] == "session_done"}
    assert done == {running: "completed", removed["turn_id"]: "cancelled",
                    kept["turn_id"]: "completed"}


async def test_an_archived_session_refuses_messages_and_its_stream_ends(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "a"}}]}]
    sid = await session(api, key, await agent(api, key, script))
    await say(api, key, sid, "first")
    await settle(api, key, sid, "requires_action")
    assert_error(await api.request("POST", f"/v1/sessions/{sid}/archive", key), 409, "conflict")
    await api.request("POST", f"/v1/sessions/{sid}/interrupt", key)
    await settle(api, key, sid, "idle")
    archived = await api.request("POST", f"/v1/sessions/{sid}/archive", key)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert (await api.request("POST", f"/v1/sessions/{sid}/archive", key)).status_code == 200
    assert_error(await say(api, key, sid, "more", mode="enqueue"), 409, "conflict")
    last_seq = archived.json()["last_seq"]
    # The stream replays to the archive and ends (the ASGI transport returns the whole body).
    body = (await api.request("GET", f"/v1/sessions/{sid}/stream?after=1", key)).text
    assert body.rstrip().endswith(": ended: the session is archived; nothing follows")
    assert f"id: {last_seq}\nevent: session_archived" in body
    # A cursor at the end can no longer be served: an explicit error, not an empty stream.
    error = assert_error(await api.request("GET", f"/v1/sessions/{sid}/stream", key,
                                           headers={"Last-Event-ID": str(last_seq)}),
                         409, "conflict")
    assert error["details"] == {"field": "after", "last_seq": last_seq}


async def test_a_fast_reply_is_appended_in_few_commits_yet_one_event_per_token(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    reply = " ".join(f"w{i}" for i in range(40))
    sid = await session(api, key, await agent(api, key, [{"text": reply}]))
    await say(api, key, sid, "go")
    await settle(api, key, sid, "idle")
    deltas = [e for e in await log(api, key, sid) if e["type"] == "message_delta"]
    assert "".join(e["data"]["text"] for e in deltas) == reply and len(deltas) == 40
    # Events of one append share their commit's timestamp: 40 tokens, far fewer commits.
    assert len({e["created_at"] for e in deltas}) <= 3
