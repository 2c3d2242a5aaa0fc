"""SSE over a real socket (uvicorn): replay from a cursor, then live, no gap, no duplicate."""

from __future__ import annotations

import asyncio

from tests.api.conftest import Live
from tests.helpers import events_from, say_many


async def test_replay_then_live_without_gap_or_duplicate(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    for text in ["a", "b", "c"]:
        await live.say(key, sid, text)
    async with live.stream(f"/v1/sessions/{sid}/stream", key) as stream:
        first = await anext(stream)
        assert first.retry == 2000
        replayed = await events_from(stream, 4)
        assert [f.id for f in replayed] == ["1", "2", "3", "4"]
        assert [f.event for f in replayed] == ["session_created"] + ["user_message"] * 3
        assert replayed[1].envelope["data"]["content"] == [{"type": "text", "text": "a"}]
        writer = asyncio.create_task(say_many(live, key, sid, 20))
        live_frames = await events_from(stream, 20)
        await writer
    assert [int(f.id or 0) for f in live_frames] == list(range(5, 25))
    assert all(f.envelope["seq"] == int(f.id or 0) for f in live_frames)


async def test_resume_from_last_event_id_or_after(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    for text in ["a", "b", "c", "d"]:
        await live.say(key, sid, text)
    async with live.stream(f"/v1/sessions/{sid}/stream?after=1", key,
                           **{"Last-Event-ID": "3"}) as stream:
        assert [f.id for f in await events_from(stream, 2)] == ["4", "5"]  # header wins
    async with live.stream(f"/v1/sessions/{sid}/stream?after=4", key) as stream:
        assert [f.id for f in await events_from(stream, 1)] == ["5"]
    # An empty Last-Event-ID is as if it were not sent: ?after= decides (it was "from 0").
    async with live.stream(f"/v1/sessions/{sid}/stream?after=3", key,
                           **{"Last-Event-ID": ""}) as stream:
        assert [f.id for f in await events_from(stream, 1)] == ["4"]


async def test_a_cursor_past_the_head_waits_for_the_event(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    async with live.stream(f"/v1/sessions/{sid}/stream?after=2", key) as stream:
        await live.say(key, sid, "two")  # seq 2: not sent, the client has it
        await live.say(key, sid, "three")
        assert [f.id for f in await events_from(stream, 1)] == ["3"]


async def test_bad_cursor_unknown_and_foreign_sessions(live: Live) -> None:
    key = await live.member_key()
    other = await live.member_key()
    sid = await live.session(key)
    headers = {"Authorization": f"Bearer {key}"}
    for path in [f"/v1/sessions/{sid}/stream?after=abc", f"/v1/sessions/{sid}/stream?after=-1"]:
        response = await live.client.get(path, headers=headers)
        assert response.status_code == 400
        # also when Last-Event-ID wins (schemathesis found ?after=true&... answered 200)
        response = await live.client.get(path, headers={**headers, "Last-Event-ID": "1"})
        assert response.status_code == 400 and response.json()["error"]["details"] == {
            "field": "after"}
        assert response.json()["error"]["details"] == {"field": "after"}
    response = await live.client.get(f"/v1/sessions/{sid}/stream",
                                     headers={**headers, "Last-Event-ID": "x"})
    assert response.json()["error"]["details"] == {"field": "Last-Event-ID"}
    for path, token in [("/v1/sessions/ses_01M8000000000000000000000A/stream", key),
                        (f"/v1/sessions/{sid}/stream", other)]:
        response = await live.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404


async def test_disconnect_frees_the_subscription(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    dispatcher = live.engine.fanout
    async with live.stream(f"/v1/sessions/{sid}/stream", key) as stream:
        await events_from(stream, 1)
        assert dispatcher.subscriber_count == 1
    async with asyncio.timeout(5):
        while dispatcher.subscriber_count:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.02)
    await live.say(key, sid, "after the client left")  # nobody to deliver to: no error


async def test_tenant_firehose_filters_and_positions(live: Live) -> None:
    key = await live.member_key()
    other = await live.member_key()
    sid = await live.session(key)
    await live.session(other)  # another tenant's event: never on this firehose
    async with live.stream("/v1/events/stream?types=user_message", key) as stream:
        await live.say(key, sid, "hello")
        await live.say(other, await live.session(other), "not yours")
        await live.say(key, sid, "again")
        got = await events_from(stream, 2)
    assert [f.event for f in got] == ["user_message", "user_message"]
    assert [f.envelope["data"]["content"][0]["text"] for f in got] == ["hello", "again"]
    assert [int(f.id or 0) for f in got] == [f.envelope["position"] for f in got]


async def test_an_idle_stream_sends_keepalive_comments(live: Live) -> None:
    live.engine.fanout.keepalive = 0.1
    key = await live.member_key()
    sid = await live.session(key)
    async with live.stream(f"/v1/sessions/{sid}/stream?after=1", key) as stream:
        first = await anext(stream)
        assert first.retry == 2000
        async with asyncio.timeout(5):
            second = await anext(stream)
    assert second.comment == "keepalive" and second.id is None


async def test_delivery_latency_is_measured(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    async with live.stream(f"/v1/sessions/{sid}/stream", key) as stream:
        await live.say(key, sid, "measured")
        await events_from(stream, 2)
    metrics = (await live.client.get("/metrics")).text
    count = next(line for line in metrics.splitlines()
                 if line.startswith("spool_fanout_delivery_seconds_count"))
    assert float(count.split()[-1]) >= 1
