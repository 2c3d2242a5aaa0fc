"""SSE readers of a live server (``tests.api.conftest.Live``) that reconnect with
Last-Event-ID, and the checks that what one received over all its connections is exactly the
session's log: ids 1..N, no gap, no duplicate, the same envelopes as the events endpoint."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from tests.api.sse_client import Frame, frames

if TYPE_CHECKING:  # tests/api/conftest.py defines the live server
    from tests.api.conftest import Live


def connected_readers(live: Live, key: str, session_id: str) -> tuple[Reader, Reader]:
    """Two connected readers on ``live``: the session's stream and the tenant's firehose."""
    session = Reader(live, key, session_id)
    firehose = Reader(live, key, session_id, path="/v1/events/stream")
    session.connect()
    firehose.connect()
    return session, firehose


async def collect(response: httpx.Response, events: list[Frame], comments: list[str],
                  changed: asyncio.Event) -> None:
    """Sort a stream's frames into events (with an id) and comments, waking waiters on each."""
    async for frame in frames(response):
        if frame.id is not None:
            events.append(frame)
        elif frame.comment is not None:
            comments.append(frame.comment)
        changed.set()


class Reader:
    """One SSE client of a session stream (or of ``path``). Every (re)connect resumes with
    Last-Event-ID = the last id it received; what it received over all its connections is
    ``self.events``."""

    def __init__(self, live: Live, key: str, session_id: str,
                 client: httpx.AsyncClient | None = None, path: str | None = None) -> None:
        self.live = live
        self.key = key
        self.path = path or f"/v1/sessions/{session_id}/stream"
        self.client = client or live.client
        self.events: list[Frame] = []
        self.comments: list[str] = []
        self.connections = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def ids(self) -> list[int]:
        return [int(frame.id or 0) for frame in self.events]

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    def connect(self) -> None:
        assert not self.connected
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.events:
            headers["Last-Event-ID"] = self.events[-1].id or ""
        self.connections += 1
        try:
            async with self.client.stream("GET", self.path, headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                await collect(response, self.events, self.comments, self._changed)
        finally:
            self._changed.set()

    async def disconnect(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def wait_for(self, count: int, within: float = 30) -> None:
        """Until ``count`` events in all were received (the connection must stay up)."""
        async with asyncio.timeout(within):
            while len(self.events) < count:
                assert self._task is not None
                if self._task.done():
                    self._task.result()  # raises what ended it
                    raise AssertionError(f"stream ended at {self.ids[-1:]} before {count}")
                self._changed.clear()
                await self._changed.wait()


class OnAServer(Protocol):
    """A live server's client: ``Live``, or another test's own."""

    client: httpx.AsyncClient


async def session_log(live: OnAServer, key: str, session_id: str) -> list[dict[str, Any]]:
    """The session's whole log, page by page, from the events endpoint."""
    data: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await live.client.get(
            f"/v1/sessions/{session_id}/events?after={after}&limit=500",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        data.extend(page["data"])
        if not page["has_more"]:
            return data
        after = data[-1]["seq"]


async def assert_received_the_log(live: Live, key: str, session_id: str, reader: Reader) -> None:
    log = await session_log(live, key, session_id)
    assert reader.ids == list(range(1, len(log) + 1))
    assert [frame.envelope for frame in reader.events] == log
    assert [frame.event for frame in reader.events] == [event["type"] for event in log]


async def assert_firehose_received_the_log(
    live: Live, key: str, session_id: str, firehose: Reader
) -> None:
    """For a tenant with one session: the firehose is that session's log, ids = positions."""
    log = await session_log(live, key, session_id)
    assert firehose.ids == [event["position"] for event in log]
    assert [frame.envelope for frame in firehose.events] == log


async def assert_both_received_the_log(live: Live, key: str, session_id: str, session: Reader,
                                       firehose: Reader) -> None:
    """The pair ``connected_readers`` opened, disconnected once a duplicate would have come:
    the session's stream got its log, the firehose the same events by position."""
    await asyncio.sleep(0.05)  # a duplicate would arrive now
    await session.disconnect()
    await firehose.disconnect()
    await assert_received_the_log(live, key, session_id, session)
    await assert_firehose_received_the_log(live, key, session_id, firehose)
