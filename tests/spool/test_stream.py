"""spool/_async/_stream.py (and its sync copy): a session's stream from the SDK against the real
server over real sockets: replay then live, resuming after the connection drops (mid-frame,
reset, a slow-consumer cut-off, a 503), no loss and no duplicate, the backoff that honours
``retry:``, errors carrying the server's envelope, and closing promptly. A small TCP proxy in
front of the uvicorn server is the thing the tests cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from spool import (
    AsyncClient,
    AsyncEventStream,
    Client,
    Event,
    NotFound,
    ProtocolError,
    Reconnect,
    SpoolConnectionError,
    StreamGapError,
    Unauthorized,
    Unavailable,
)
from tests.api.conftest import Live
from tests.helpers import say_many

# --------------------------------------------------------------------------- a proxy to cut


class Proxy:
    """A TCP proxy in front of the live server. It records when each connection arrived and its
    request head; it can cut the open connections (reset or clean close), cut the next ones after
    a number of response bytes (mid-frame), refuse the next ones (accept, then reset), or answer
    the next ones itself with canned bytes."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self.accepted: list[float] = []
        self.requests: list[bytes] = []
        self.refuse = 0
        self.answers: list[bytes] = []
        self.cut_after: list[int] = []  # response bytes to pass on the next connections, then cut
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def last_event_ids(self) -> list[int | None]:
        found = [re.search(rb"(?im)^last-event-id: *(\d+)\r$", head) for head in self.requests]
        return [int(match.group(1)) if match else None for match in found]

    def cut(self, *, reset: bool = True) -> None:
        for client, upstream in list(self._open):
            for writer in (client, upstream):
                if reset:
                    writer.transport.abort()
                else:
                    writer.close()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        if self.refuse:
            self.refuse -= 1
            return  # reset at once
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        if self.answers:
            writer.write(self.answers.pop(0))
            await writer.drain()
            writer.close()
            return
        limit = self.cut_after.pop(0) if self.cut_after else None
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        up_writer.write(head)
        pair = (writer, up_writer)
        self._open.add(pair)
        try:
            await asyncio.gather(_pump(reader, up_writer, None), _pump(up_reader, writer, limit))
        finally:
            self._open.discard(pair)
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                limit: int | None) -> None:
    """Copy until EOF, or until ``limit`` bytes have passed: then reset both ends."""
    sent = 0
    while chunk := await reader.read(65536):
        if limit is not None and sent + len(chunk) >= limit:
            writer.write(chunk[: limit - sent])
            await writer.drain()
            writer.transport.abort()
            raise ConnectionResetError("cut by the test")
        writer.write(chunk)
        await writer.drain()
        sent += len(chunk)
    if writer.can_write_eof():
        writer.write_eof()


def canned(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status}\r\n{head}Connection: close\r\n\r\n".encode() + body


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> int:
    """The server's ``retry:`` set to 20 ms, so reconnects in these tests are quick."""
    monkeypatch.setattr("api.sse.RETRY_MS", 20)
    return 20


async def take(stream: AsyncIterator[Event], count: int,
               within: float = 30) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(within):
        async for event in stream:
            got.append(event)
            if len(got) == count:
                break
    return got


async def subscribers_gone(server: Live, within: float = 15) -> None:
    async with asyncio.timeout(within):
        while server.engine.fanout.subscriber_count:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.01)


def assert_exact(events: list[Event], first: int, last: int) -> None:
    assert [e.seq for e in events] == list(range(first, last + 1))
    assert all(e.stream_type == "session" and e.position > 0 for e in events)


def stream_of(client: AsyncClient, session_id: str, after: int = 0,
              **reconnect: Any) -> AsyncEventStream:
    return client.sessions.stream(session_id, after=after, reconnect=Reconnect(**reconnect))


def envelope(seq: int) -> bytes:
    """A session event's JSON as the server frames it."""
    return json.dumps({
        "id": f"00000000-0000-0000-0000-{seq:012d}", "stream_id": "ses_x",
        "stream_type": "session", "seq": seq, "position": 100 + seq, "type": "user_message",
        "data": {"n": 1}, "meta": {}, "created_at": "2026-01-01T00:00:00Z"}).encode()


# --------------------------------------------------------------------------- offline


def test_backoff_doubles_from_the_base_is_capped_and_floored_by_retry_after() -> None:
    client = Reconnect(max_delay=1.0, jitter=0)
    assert [client.backoff(n, 0.1) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert client.backoff(0, 0.1, retry_after=3) == 3  # Retry-After beats the cap
    assert client.backoff(0, 0) == 0.01  # "retry: 0" cannot spin
    jittery = Reconnect(max_delay=1.0, jitter=0.5)
    delays = {jittery.backoff(9, 0.1) for _ in range(50)}
    assert all(1.0 <= d <= 1.5 for d in delays) and len(delays) > 1


# --------------------------------------------------------------------------- live


async def test_replay_then_live_then_resume_from_a_cursor(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    for text in ["a", "b", "c"]:
        await live.say(key, sid, text)
    async with (AsyncClient(base_url=live.base_url, api_key=key) as spool,
                stream_of(spool, sid) as stream):
        replayed = await take(stream, 4)
        assert [e.type for e in replayed] == ["session_created"] + ["user_message"] * 3
        assert replayed[1].data["content"] == [{"type": "text", "text": "a"}]
        writer = asyncio.create_task(say_many(live, key, sid, 10))
        live_events = await take(stream, 10)
        await writer
        assert_exact(replayed + live_events, 1, 14)
        assert stream.last_event_id == 14 and stream.reconnects == 0
        with pytest.raises(AttributeError):
            replayed[0].seq = 7  # type: ignore[misc]  # frozen
        async with stream_of(spool, sid, after=12) as resumed:
            assert_exact(await take(resumed, 2), 13, 14)


async def test_resumes_after_the_connection_drops_without_loss_or_duplicate(
    live: Live, fast_retry: int,
) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    await say_many(live, key, sid, 9)  # seq 1..10 stored before the client connects
    async with Proxy(live.base_url) as proxy:
        # The first connections are cut after so many response bytes: inside the retry frame,
        # inside an event, on a boundary-ish offset, deep in the replay.
        proxy.cut_after = [5, 200, 777, 1500, 2900]
        async with (AsyncClient(base_url=proxy.url, api_key=key) as spool,
                    stream_of(spool, sid, max_delay=0.1) as stream):
            replayed = await take(stream, 10)
            assert stream.reconnects >= 4
            writer = asyncio.create_task(say_many(live, key, sid, 40, pause=0.002))
            got: list[Event] = []
            async with asyncio.timeout(15):
                async for event in stream:
                    got.append(event)
                    if event.seq in (18, 27, 36):
                        proxy.cut(reset=event.seq != 27)  # a reset, a clean close, a reset
                    if event.seq == 50:
                        break
            await writer
            assert_exact(replayed + got, 1, 50)
            assert stream.duplicates_dropped == 0
            assert stream.reconnects >= 7  # four byte cuts (at least) and three in the live phase
            # Each reconnect asked for the events after the last one delivered at that moment.
            headers = proxy.last_event_ids()
            assert len(headers) == stream.reconnects + 1
            assert headers[0] is None  # from the start
            delivered = {e.seq for e in replayed + got}
            assert all(h in delivered for h in headers[1:] if h is not None)
            assert headers[1:] == sorted(headers[1:], key=lambda h: h or 0)
            assert [h for h in headers if h and h >= 18][:1] in ([18], [19])
    await subscribers_gone(live)  # every cut connection was freed on the server


async def test_the_sync_stream_resumes_after_the_connection_drops(
    live: Live, fast_retry: int,
) -> None:
    """The generated sync copy (in a thread: the proxy and the server run on this loop)."""
    key = await live.member_key()
    sid = await live.session(key)
    await say_many(live, key, sid, 9)

    def read(url: str) -> tuple[list[Event], int]:
        with (Client(base_url=url, api_key=key) as client,
              client.sessions.stream(sid, reconnect=Reconnect(max_delay=0.1)) as stream):
            events = [event for _, event in zip(range(10), stream, strict=False)]
            return events, stream.reconnects

    async with Proxy(live.base_url) as proxy:
        proxy.cut_after = [5, 700, 1500]
        events, reconnects = await asyncio.wait_for(asyncio.to_thread(read, proxy.url), 30)
    assert_exact(events, 1, 10)
    assert reconnects >= 3 and proxy.last_event_ids()[0] is None
    await subscribers_gone(live)


async def test_resumes_after_a_slow_consumer_is_cut_off(
    live: Live, fast_retry: int,
) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    live.engine.fanout.capacity = 1  # the server's per-connection buffer: one event
    async with (AsyncClient(base_url=live.base_url, api_key=key) as spool,
                stream_of(spool, sid) as stream):
        assert_exact(await take(stream, 1), 1, 1)
        await asyncio.gather(*(live.say(key, sid, f"burst {i}") for i in range(60)))
        got = await take(stream, 60)
    assert_exact(got, 2, 61)
    metrics = (await live.client.get("/metrics")).text
    cut_off = re.search(r"^spool_sse_cut_off_total (\S+)$", metrics, re.M)
    assert cut_off and float(cut_off.group(1)) >= 1, "the burst should overflow one slot"
    assert stream.reconnects >= 1


async def test_backoff_honours_retry_doubles_caps_and_resets(
    live: Live, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The delays the client chooses follow the schedule exactly, and it really waits each
    one before reconnecting. Only lower bounds on the wall clock: a busy machine may make a
    reconnect late, never early."""
    monkeypatch.setattr("api.sse.RETRY_MS", 80)
    key = await live.member_key()
    sid = await live.session(key)
    async with (Proxy(live.base_url) as proxy,
                AsyncClient(base_url=proxy.url, api_key=key) as spool,
                stream_of(spool, sid, max_delay=0.25, jitter=0.25,
                          initial_retry=5.0) as stream):
        chosen: list[float] = []
        backoff = Reconnect.backoff

        def recording(self: Reconnect, attempt: int, base: float,
                      retry_after: float | None = None) -> float:
            chosen.append(backoff(self, attempt, base, retry_after))
            return chosen[-1]

        monkeypatch.setattr(Reconnect, "backoff", recording)
        await take(stream, 1)
        assert stream.retry == 0.08  # from the server's "retry: 80"
        proxy.refuse = 3
        cut_at = time.monotonic()
        proxy.cut()
        await live.say(key, sid, "after the outage")
        assert_exact(await take(stream, 1), 2, 2)
        # Refused, refused, refused, then through, after 80, 160, then 250 ms twice (capped
        # from 320 and 640), each plus up to 25 % of jitter.
        assert len(chosen) == 4, chosen
        for delay, base in zip(chosen, [0.08, 0.16, 0.25, 0.25], strict=True):
            assert base <= delay <= base * 1.25, (chosen, base)
        for gap, delay in zip(_gaps([cut_at, *proxy.accepted[1:]]), chosen, strict=True):
            assert gap >= delay - 0.005, (gap, delay)
        # A connection that worked resets the backoff to the server's retry.
        cut_at = time.monotonic()
        proxy.cut()
        await live.say(key, sid, "again")
        assert_exact(await take(stream, 1), 3, 3)
        assert len(chosen) == 5 and 0.08 <= chosen[-1] <= 0.1, chosen
        assert proxy.accepted[-1] - cut_at >= chosen[-1] - 0.005
        assert stream.reconnects == 5


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_a_503_waits_for_retry_after_then_resumes(
    live: Live, fast_retry: int,
) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    envelope = {"error": {"type": "unavailable", "message": "the database is unreachable"}}
    unavailable = canned("503 Service Unavailable",
                         {"Content-Type": "application/json", "Retry-After": "1"},
                         json.dumps(envelope).encode())
    async with Proxy(live.base_url) as proxy:
        async with (AsyncClient(base_url=proxy.url, api_key=key) as spool,
                    stream_of(spool, sid, max_delay=0.05) as stream):
            await take(stream, 1)
            proxy.answers = [unavailable]
            cut_at = time.monotonic()
            proxy.cut()
            await live.say(key, sid, "after the 503")
            assert_exact(await take(stream, 1), 2, 2)
            assert 1.0 <= proxy.accepted[-1] - cut_at < 10  # Retry-After beat max_delay
            assert proxy.last_event_ids() == [None, 1, 1]
        # With no retries allowed, the 503 is raised with its envelope.
        proxy.answers = [unavailable]
        async with (AsyncClient(base_url=proxy.url, api_key=key) as spool,
                    stream_of(spool, sid, max_retries=0) as stream):
            with pytest.raises(Unavailable) as caught:
                await anext(stream)
        assert caught.value.status == 503 and caught.value.retry_after == 1.0
        assert caught.value.envelope == envelope


async def test_errors_retrying_cannot_fix_raise_with_the_envelope(live: Live) -> None:
    key = await live.member_key()
    unknown = "ses_01M8000000000000000000000A"
    async with Proxy(live.base_url) as proxy, AsyncClient(base_url=proxy.url, api_key=key) as spool:
        with pytest.raises(NotFound) as caught:
            await anext(stream_of(spool, unknown))
        error = caught.value
        assert error.status == 404 and error.type == "not_found"
        assert unknown in error.message and error.request_id
        assert error.envelope == {"error": {"type": "not_found", "message": error.message}}
        async with AsyncClient(base_url=proxy.url, api_key="spk_not-a-key") as stranger:
            with pytest.raises(Unauthorized) as denied:
                await anext(stream_of(stranger, unknown))
        assert denied.value.status == 401 and denied.value.type == "unauthorized"
        assert len(proxy.accepted) == 2  # neither was retried
    with pytest.raises(ValueError):
        stream_of(spool, unknown, after=-1)


async def test_a_gap_or_a_non_sse_answer_is_an_error_never_hidden(live: Live) -> None:
    # Each event's JSON split over two data lines (joined by a newline, which JSON allows).
    frames = b"retry: 10\n\n" + b"".join(
        b"id: %d\nevent: user_message\ndata: %s\ndata: %s\n\n" % (
            i, envelope(i)[:1], envelope(i)[1:]) for i in [1, 2, 2, 1, 3, 5])
    async with (Proxy(live.base_url) as proxy,
                AsyncClient(base_url=proxy.url, api_key="spk_x") as spool):
        proxy.answers = [canned("200 OK", {"Content-Type": "text/event-stream"}, frames)]
        stream = stream_of(spool, "ses_x")
        got = [await anext(stream) for _ in range(3)]
        assert [(e.seq, e.data) for e in got] == [(i, {"n": 1}) for i in (1, 2, 3)]
        with pytest.raises(StreamGapError) as caught:
            await anext(stream)
        assert (caught.value.expected, caught.value.got) == (4, 5)
        assert stream.duplicates_dropped == 2 and stream.last_event_id == 3
        proxy.answers = [canned("200 OK", {"Content-Type": "text/html"}, b"<html>")]
        with pytest.raises(ProtocolError):
            await anext(stream_of(spool, "ses_x"))


async def test_gives_up_after_max_retries_when_nothing_answers() -> None:
    async with AsyncClient(base_url="http://127.0.0.1:9", api_key="spk_x") as spool:
        stream = stream_of(spool, "ses_x", max_retries=2, initial_retry=0.01)
        with pytest.raises(SpoolConnectionError) as caught:
            await anext(stream)
    assert stream.reconnects == 2 and caught.value.__cause__ is not None


async def test_cancel_and_aclose_close_the_connection_promptly(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    async with AsyncClient(base_url=live.base_url, api_key=key) as spool:
        # Cancelling the task that waits for the next event.
        stream = stream_of(spool, sid)
        await take(stream, 1)
        waiter = asyncio.create_task(take(stream, 1))
        await asyncio.sleep(0.05)
        assert live.engine.fanout.subscriber_count == 1
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await subscribers_gone(live)

        # aclose() from another task while one waits: the wait ends, nothing reconnects.
        stream = stream_of(spool, sid)
        await take(stream, 1)
        reader = asyncio.create_task(take(stream, 2))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await stream.aclose()
        assert await asyncio.wait_for(reader, 1) == []
        assert time.monotonic() - started < 5 and stream.closed  # not the backoff
        await subscribers_gone(live)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

        # Leaving the `async with` after a break; and a stream still open when the client closes.
        async with stream_of(spool, sid) as stream:
            async for _ in stream:
                break
        await subscribers_gone(live)
        left_open = stream_of(spool, sid)
        await take(left_open, 1)
    assert left_open.closed
    await subscribers_gone(live)
