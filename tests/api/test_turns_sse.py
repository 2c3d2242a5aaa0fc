"""A turn over SSE on a real socket: a client sees the reply token by token, drops in the
middle of the message, resumes with Last-Event-ID, and ends up with the session's log exactly."""

from __future__ import annotations

import asyncio

from tests.api.conftest import Live
from tests.api.sse_client import Frame

REPLY = " ".join(f"token{i}" for i in range(20))


async def test_a_client_follows_a_turn_token_by_token_and_resumes_mid_message(
    live: Live,
) -> None:
    key = await live.member_key()
    agent = await live.post("/v1/agents", key, {
        "name": "slow", "model": {"script": [{"text": REPLY, "delay": 0.02}]}})
    sid = (await live.post("/v1/sessions", key, {"agent_id": agent.json()["id"]})).json()["id"]
    path = f"/v1/sessions/{sid}/stream"
    got: list[Frame] = []
    async with live.stream(path, key) as stream:
        assert (await anext(stream)).retry is not None
        await live.say(key, sid, "go")
        async with asyncio.timeout(30):
            async for frame in stream:  # until five tokens have arrived, one frame each
                got.append(frame)
                if sum(f.event == "message_delta" for f in got) == 5:
                    break
    assert [f.event for f in got][-1] == "message_delta"
    async with live.stream(path, key, **{"Last-Event-ID": got[-1].id or ""}) as stream:
        async with asyncio.timeout(30):
            async for frame in stream:
                if frame.id is not None:
                    got.append(frame)
                if frame.event == "session_done":
                    break
    log = (await live.client.get(f"/v1/sessions/{sid}/events?limit=500",
                                 headers={"Authorization": f"Bearer {key}"})).json()["data"]
    assert [int(f.id or 0) for f in got] == [e["seq"] for e in log]  # no gap, no duplicate
    assert [f.envelope for f in got] == log
    deltas = [f.envelope["data"]["text"] for f in got if f.event == "message_delta"]
    assert len(deltas) == 20 and "".join(deltas) == REPLY
