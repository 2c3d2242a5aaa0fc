"""Two real ``spool serve`` processes, A and B, on one Postgres database and one Redis: the
multi-process guarantees of the SSE contract with nothing shared in memory.

1. A client streaming a session from B receives every event appended through A (and through B
   at the same time): ids 1..N, in order, exactly once; so do a client on A and B's firehose.
2. A process killed between commit and publish: A's Redis traffic goes through a TCP proxy that
   the test freezes (every byte either way is swallowed; connections stay open, so A's publish
   hangs rather than fails). Appends through A still commit (202), A tries to publish (the
   proxy swallows its XADD) and is SIGKILLed. Nobody published those events, yet the clients
   already streaming from B and a client resuming on B from a cursor before them receive them
   exactly once and in order, and B's relay puts them into ``spool:{log}:events`` (entry id =
   position) within seconds. A, restarted on the real Redis, serves appends that reach B's
   clients with no duplicate.
3. The same, but B publishes an event of its own right after A's unpublished ones: Redis then
   refuses them for ever (older than the stream's last entry), a hole no relay fills. B's
   clients get them from Postgres.

Why these fail when the mechanisms do: once A is dead only B can deliver the frozen events.
In 2, without B's dispatcher filling from Postgres the relayed entries still bring them (the two
race: ~1 s idle check, ~1-2 s relay), so 2 fails on delivery only when both are broken, and
on the stream check (run before A restarts: only B can have written it) when the relay is. 3
and the firehose of 1 (whose tenant tail, unlike the session tail, fills nothing itself) fail
when the dispatcher's filling is broken, whatever the relay does. Any duplicate (relayed copies
after a fill, replay/live overlap) fails the exact id lists. Each was checked by disabling
``Publisher._relay_loop`` and/or ``Dispatcher._fill`` in the servers.

Every process is stopped in ``finally`` (the ``spawn`` fixture's ``Spawner``) and the tests check
/proc that none is left: each server runs with its working directory in the scratch dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis.asyncio as redis

from engine.log.fanout import LOG_KEY, entry_id
from tests.api.sse_client import Frame, frames
from tests.conftest import ADMIN_TOKEN, Services
from tests.helpers_processes import Server, Spawner, alive, serve_env, wait_gone
from tests.helpers_sse import session_log

pytestmark = pytest.mark.slow

DELIVERY_WITHIN = 30.0  # expected: ~1 s (idle check) and ~2 s (relay); generous for a busy box
T = TypeVar("T")


# --- a Redis proxy that can be frozen ------------------------------------------------------------


class RedisProxy:
    """A TCP proxy to Redis on an event loop in a thread of its own (so it keeps forwarding
    while the test blocks). ``freeze()`` turns it into a black hole: bytes either way are
    swallowed (those towards Redis are kept in ``swallowed``), connections stay open and new
    ones are accepted, so a client's command neither reaches Redis nor fails fast."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        assert parts.hostname and parts.port, redis_url
        self._target = (parts.hostname, parts.port)
        self._parts = parts
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="redis-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._frozen = False
        self._swallowed = bytearray()
        self._lock = threading.Lock()
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        port = self._server.sockets[0].getsockname()[1]
        netloc = f"127.0.0.1:{port}"
        if self._parts.username or self._parts.password:
            netloc = self._parts.netloc.rpartition("@")[0] + "@" + netloc
        self.url = urlunsplit(self._parts._replace(netloc=netloc))
        return self.url

    def freeze(self) -> None:
        """From now on nothing goes through (set on the proxy's loop, between two chunks)."""
        self._call(self._set_frozen())

    @property
    def swallowed(self) -> bytes:
        with self._lock:
            return bytes(self._swallowed)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _set_frozen(self) -> None:
        self._frozen = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.add(writer.transport)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self._target)
            self._transports.add(upstream.transport)
            await asyncio.gather(
                self._pump(reader, upstream, towards_redis=True),
                self._pump(up_reader, writer, towards_redis=False),
                return_exceptions=True,
            )
        except (OSError, asyncio.CancelledError):
            pass  # Redis refused, or _close() cancelled it: end quietly (no asyncio error log)
        finally:
            for side in (writer, upstream):
                if side is not None:
                    side.transport.abort()
                    self._transports.discard(side.transport)
            self._handlers.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, towards_redis: bool
    ) -> None:
        while chunk := await reader.read(65536):
            if self._frozen:
                if towards_redis:
                    with self._lock:
                        self._swallowed += chunk
                continue
            writer.write(chunk)
            await writer.drain()
        if not self._frozen:  # pass the close on; frozen, the other side hears nothing
            writer.transport.abort()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.abort()  # the pumps see the end of their connections and return
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


# --- HTTP and SSE clients of one server ----------------------------------------------------------


class Api:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def post(self, path: str, token: str, body: object, **headers: str) -> httpx.Response:
        return await self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )

    async def member_key(self) -> tuple[str, str]:
        created = await self.post("/v1/tenants", ADMIN_TOKEN, {"name": "processes"})
        assert created.status_code == 201, created.text
        tenant_id: str = created.json()["id"]
        response = await self.post(
            "/v1/api_keys",
            ADMIN_TOKEN,
            {"name": "k", "role": "member"},
            **{"Spool-Tenant": tenant_id},
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return tenant_id, key

    async def session(self, key: str) -> str:
        response = await self.post("/v1/sessions", key, {})
        assert response.status_code == 201, response.text
        session_id: str = response.json()["id"]
        return session_id

    async def say(self, key: str, session_id: str, text: str) -> dict[str, Any]:
        """Submit a message; 202 means its event is committed. Returns the event."""
        response = await self.post(f"/v1/sessions/{session_id}/messages", key, {"content": text})
        assert response.status_code == 202, response.text
        event: dict[str, Any] = response.json()["event"]
        assert response.headers["Spool-Position"] == str(event["position"])
        return event

    async def session_log(self, key: str, session_id: str) -> list[dict[str, Any]]:
        return await session_log(self, key, session_id)

    async def aclose(self) -> None:
        await self.client.aclose()


class Reader:
    """One SSE connection (never reconnected: it must stay up through everything)."""

    def __init__(self, base_url: str, key: str, path: str, *, last_event_id: int | None = None):
        self.path = path
        self.headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=30))
        self.events: list[Frame] = []
        self.comments: list[str] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ids(self) -> list[int]:
        return [int(frame.id or 0) for frame in self.events]

    def connect(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self.client.stream("GET", self.path, headers=self.headers) as response:
                assert response.status_code == 200, await response.aread()
                async for frame in frames(response):
                    if frame.id is not None:
                        self.events.append(frame)
                        self._changed.set()
                    elif frame.comment is not None:
                        self.comments.append(frame.comment)
        finally:
            self._changed.set()

    async def wait_for(self, count: int, within: float = DELIVERY_WITHIN) -> None:
        """Until ``count`` events were received on this connection."""
        try:
            async with asyncio.timeout(within):
                while len(self.events) < count:
                    assert self._task is not None
                    if self._task.done():
                        self._task.result()  # raises what ended it
                        raise AssertionError(
                            f"{self.path}: the server ended the stream at {self.ids[-1:]} "
                            f"(comments: {self.comments})"
                        )
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.path}: {len(self.events)} of {count} events within {within:.0f}s "
                f"(ids {self.ids})"
            ) from None

    async def close(self) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                assert not task.done(), f"{self.path}: the server ended the stream"
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.client.aclose()


def assert_exactly(
    reader: Reader, log: list[dict[str, Any]], *, after: int = 0, by: str = "seq"
) -> None:
    """The reader got exactly ``log``'s events after ``after``: in order, once, as stored."""
    expected = [event for event in log if event[by] > after]
    assert reader.ids == [event[by] for event in expected], reader.path
    assert [frame.envelope for frame in reader.events] == expected
    assert [frame.event for frame in reader.events] == [event["type"] for event in expected]


async def stream_entries(client: redis.Redis) -> list[tuple[str, dict[bytes, bytes]]]:
    entries: Any = await client.xrange(LOG_KEY)
    return [(raw_id.decode(), fields) for raw_id, fields in entries]


async def wait_for_stream(
    client: redis.Redis, until: int, within: float = DELIVERY_WITHIN
) -> list[tuple[str, dict[bytes, bytes]]]:
    """The stream's entries once its last one is position ``until``'s."""
    entries: list[tuple[str, dict[bytes, bytes]]] = []
    try:
        async with asyncio.timeout(within):
            while not (entries and entries[-1][0] == entry_id(until)):
                await asyncio.sleep(0.05)
                entries = await stream_entries(client)
    except TimeoutError:
        raise AssertionError(
            f"{LOG_KEY} did not reach {entry_id(until)} within {within:.0f}s: "
            f"{[raw_id for raw_id, _ in entries]}"
        ) from None
    return entries


# --- servers --------------------------------------------------------------------------------------


def start(spawn: Spawner, scratch: Path, name: str, database_url: str, redis_url: str,
          **extra_env: str) -> Server:
    """``spool serve`` on external services, with its own data dir, which is its working
    directory too (so /proc shows whether it is still running)."""
    data_dir = scratch / name
    data_dir.mkdir(exist_ok=True)
    env = serve_env(
        data_dir,
        SPOOL_DATABASE_URL=database_url,
        SPOOL_REDIS_URL=redis_url,
        SPOOL_ADMIN_TOKEN=ADMIN_TOKEN,
        SPOOL_SSE_KEEPALIVE_SECONDS="2",
        **extra_env,
    )
    return spawn(data_dir, cwd=data_dir, env=env)


async def ready(*servers: Server) -> list[str]:
    return list(await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in servers)))


async def stop_cleanly(scratch: Path, *servers: Server) -> None:
    for server in servers:
        code = await asyncio.to_thread(server.stop)
        assert code == 0, f"exit code {code}\n{server.output()}"
        assert server.stop_seconds < 30, f"took {server.stop_seconds:.1f}s to stop"
        assert "Traceback" not in "\n".join(server.stderr), server.output()
    for server in servers:
        assert not alive(server.pid)
    left = await asyncio.to_thread(wait_gone, scratch, 10)
    assert left == [], f"left running: {left}"


# --- 1. appends through A reach a client on B ----------------------------------------------------


async def test_a_client_on_b_receives_every_event_appended_through_a(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str
) -> None:
    database_url = await services.fresh_database()
    server_a = start(spawn, scratch, "a", database_url, redis_url)
    server_b = start(spawn, scratch, "b", database_url, redis_url)
    url_a, url_b = await ready(server_a, server_b)
    api_a, api_b = Api(url_a), Api(url_b)
    readers: list[Reader] = []
    try:
        _, key = await api_a.member_key()
        session_id = await api_a.session(key)
        on_b = Reader(url_b, key, f"/v1/sessions/{session_id}/stream")
        firehose_b = Reader(url_b, key, "/v1/events/stream")
        on_a = Reader(url_a, key, f"/v1/sessions/{session_id}/stream")
        readers = [on_b, firehose_b, on_a]
        for reader in readers:
            reader.connect()
            await reader.wait_for(1)

        # Concurrent writers, most through A and one through B at the same time: the two
        # processes publish interleaved, so Redis refuses entries older than the last one
        # (most runs) and the dispatchers must fill those holes from Postgres.
        async def writer(api: Api, name: str, count: int) -> None:
            for index in range(count):
                await api.say(key, session_id, f"{name} {index}")

        await asyncio.gather(
            *(writer(api_a, f"A{n}", 15) for n in range(3)), writer(api_b, "B", 15)
        )
        total = 1 + 4 * 15
        for reader in readers:
            await reader.wait_for(total)
        await asyncio.sleep(0.5)  # room for a late duplicate to show up
        for reader in readers:
            await reader.close()
        log = await api_b.session_log(key, session_id)
        assert [event["seq"] for event in log] == list(range(1, total + 1))
        assert_exactly(on_b, log)
        assert_exactly(on_a, log)
        assert_exactly(firehose_b, log, by="position")
        readers = []
    finally:
        for reader in readers:
            with contextlib.suppress(BaseException):
                await reader.close()
        await api_a.aclose()
        await api_b.aclose()
    await stop_cleanly(scratch, server_a, server_b)


# --- 2 and 3. a process killed between commit and publish ----------------------------------------


@dataclass
class Frozen:
    """A (its Redis through a proxy) and B (the real Redis) on one database; a session created
    through A; a client of the session stream and one of the tenant firehose on B."""

    spawn: Spawner
    scratch: Path
    database_url: str
    redis_url: str
    proxy: RedisProxy
    tap: redis.Redis  # the real Redis, for the test's own reads
    server_a: Server
    server_b: Server
    api_a: Api
    api_b: Api
    tenant_id: str
    key: str
    session_id: str
    on_b: Reader
    firehose_b: Reader
    before: list[dict[str, Any]]  # published by A through the proxy
    unpublished: list[dict[str, Any]]  # committed by A, their publish swallowed
    readers: list[Reader] = field(default_factory=list)
    apis: list[Api] = field(default_factory=list)

    def reader(self, base_url: str, path: str, *, last_event_id: int | None = None) -> Reader:
        reader = Reader(base_url, self.key, path, last_event_id=last_event_id)
        self.readers.append(reader)
        reader.connect()
        return reader

    async def restart_a(self) -> Api:
        """A again, on the real Redis this time."""
        self.server_a = start(self.spawn, self.scratch, "a", self.database_url, self.redis_url)
        [url] = await ready(self.server_a)
        self.api_a = Api(url)
        self.apis.append(self.api_a)
        return self.api_a

    async def both_on_b_have(self, count: int) -> None:
        """Until B's session client and its firehose client each received ``count`` events."""
        await self.on_b.wait_for(count)
        await self.firehose_b.wait_for(count)

    def assert_both_on_b_received(self, log: list[dict[str, Any]]) -> None:
        """B's two clients received exactly the session's ``log``, each event once."""
        assert_exactly(self.on_b, log)
        assert_exactly(self.firehose_b, log, by="position")

    async def close_readers(self) -> None:
        for reader in self.readers:
            await reader.close()
        self.readers.clear()


@contextlib.asynccontextmanager
async def a_frozen_mid_publish(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str, *,
    relay_b: float = 1.0,
) -> AsyncIterator[Frozen]:
    """Up to the moment A has committed five events (202) and is stuck publishing the first:
    the proxy swallowed its XADD. Nothing A sends reaches Redis any more. ``relay_b``: B's
    SPOOL_RELAY_SECONDS."""
    database_url = await services.fresh_database()
    proxy = RedisProxy(redis_url)
    tap = redis.from_url(redis_url)
    readers: list[Reader] = []
    apis: list[Api] = []
    try:
        server_a = start(spawn, scratch, "a", database_url, proxy.start())
        server_b = start(spawn, scratch, "b", database_url, redis_url,
                         SPOOL_RELAY_SECONDS=str(relay_b))
        url_a, url_b = await ready(server_a, server_b)
        api_a, api_b = Api(url_a), Api(url_b)
        apis += [api_a, api_b]
        tenant_id, key = await api_a.member_key()
        session_id = await api_a.session(key)
        on_b = Reader(url_b, key, f"/v1/sessions/{session_id}/stream")
        firehose_b = Reader(url_b, key, "/v1/events/stream")
        readers += [on_b, firehose_b]
        for reader in readers:
            reader.connect()

        # Normal operation: A publishes through the proxy.
        before = [await api_a.say(key, session_id, f"before {n}") for n in range(3)]
        await on_b.wait_for(4)
        await firehose_b.wait_for(4)
        await wait_for_stream(tap, until=before[-1]["position"])

        proxy.freeze()
        unpublished = [await api_a.say(key, session_id, f"unpublished {n}") for n in range(5)]
        assert [event["seq"] for event in unpublished] == list(range(5, 10))
        # A did try to publish, into the void: its XADD was swallowed, or, when its pooled
        # connection was busy (the relay, say) and it opened a new one, that connection's
        # handshake was (redis-py sends AUTH and CLIENT SETINFO first and waits for the
        # replies), so its XADD is stuck behind it. Either way nothing of A's reaches Redis.
        async with asyncio.timeout(DELIVERY_WITHIN):
            while not _tried(proxy.swallowed, unpublished[0]):  # noqa: ASYNC110 - bytes
                await asyncio.sleep(0.01)

        yield Frozen(
            spawn=spawn,
            scratch=scratch,
            database_url=database_url,
            redis_url=redis_url,
            proxy=proxy,
            tap=tap,
            server_a=server_a,
            server_b=server_b,
            api_a=api_a,
            api_b=api_b,
            tenant_id=tenant_id,
            key=key,
            session_id=session_id,
            on_b=on_b,
            firehose_b=firehose_b,
            before=before,
            unpublished=unpublished,
            readers=readers,
            apis=apis,
        )
    finally:
        for reader in readers:
            with contextlib.suppress(BaseException):
                await reader.close()
        for api in apis:
            await api.aclose()
        await tap.aclose()
        proxy.stop()


def _tried(swallowed: bytes, event: dict[str, Any]) -> bool:
    """The event's XADD was swallowed, or a connection's handshake was."""
    return entry_id(event["position"]).encode() in swallowed or any(
        command in swallowed for command in (b"AUTH", b"HELLO", b"SETINFO"))


async def kill(server: Server) -> None:
    assert await asyncio.to_thread(server.stop, signal.SIGKILL) == -signal.SIGKILL
    assert not alive(server.pid)


async def test_events_committed_by_a_process_killed_before_publishing_reach_clients_once(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str
) -> None:
    async with a_frozen_mid_publish(spawn, scratch, services, redis_url) as frozen:
        await kill(frozen.server_a)
        # Only B can deliver them now: to the clients already streaming, and to a client
        # resuming from just before them (replay from Postgres, then live).
        cursor = frozen.before[-1]["seq"]
        resumer = frozen.reader(
            frozen.server_b.url, f"/v1/sessions/{frozen.session_id}/stream", last_event_id=cursor
        )
        await frozen.both_on_b_have(9)
        await resumer.wait_for(5)
        # B's relay republishes what A left unpublished (entry ids are positions). Checked
        # before A restarts: nobody else can have written them.
        await wait_for_stream(frozen.tap, until=frozen.unpublished[-1]["position"])

        api_a = await frozen.restart_a()
        after = [await api_a.say(frozen.key, frozen.session_id, f"after {n}") for n in range(3)]
        assert [event["seq"] for event in after] == [10, 11, 12]
        await frozen.both_on_b_have(12)
        await resumer.wait_for(8)
        entries = await wait_for_stream(frozen.tap, until=after[-1]["position"])
        await asyncio.sleep(1.5)  # a relay interval: room for a late duplicate to show up
        await frozen.close_readers()

        log = await frozen.api_b.session_log(frozen.key, frozen.session_id)
        assert [event["seq"] for event in log] == list(range(1, 13))
        frozen.assert_both_on_b_received(log)
        assert_exactly(resumer, log, after=cursor)
        # The stream holds every event once, as stored (one tenant, one session: positions
        # are the log's), the five A never published included.
        assert [raw_id for raw_id, _ in entries] == [entry_id(e["position"]) for e in log]
        assert [json.loads(fields[b"e"]) for _, fields in entries] == log
        assert {fields[b"t"].decode() for _, fields in entries} == {frozen.tenant_id}
        await stop_cleanly(scratch, frozen.server_a, frozen.server_b)


async def test_a_hole_a_killed_process_left_in_the_stream_is_filled_from_postgres(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str
) -> None:
    """B publishes an event right after A's unpublished five, before B's relay acts (its
    interval is set far beyond the test, so however slow the machine, B cannot relay them
    first): Redis then refuses A's five for ever (older than the last entry), so the stream has
    a hole no relay fills. Clients on B get them from Postgres: the firehose only through the
    dispatcher's filling (the tenant tail has none of its own)."""
    async with a_frozen_mid_publish(spawn, scratch, services, redis_url,
                                    relay_b=3600) as frozen:
        [through_b] = [await frozen.api_b.say(frozen.key, frozen.session_id, "through B")]
        assert through_b["seq"] == 10
        await kill(frozen.server_a)
        await frozen.both_on_b_have(10)
        await wait_for_stream(frozen.tap, until=through_b["position"])

        api_a = await frozen.restart_a()
        after = await api_a.say(frozen.key, frozen.session_id, "after")
        await frozen.both_on_b_have(11)
        await asyncio.sleep(1.5)  # a relay interval: room for a late duplicate to show up
        await frozen.close_readers()

        log = await frozen.api_b.session_log(frozen.key, frozen.session_id)
        assert [event["seq"] for event in log] == list(range(1, 12))
        frozen.assert_both_on_b_received(log)
        # The hole really is there, and stays: the stream has every event but A's five.
        hole = {event["position"] for event in frozen.unpublished}
        assert [raw_id for raw_id, _ in await stream_entries(frozen.tap)] == [
            entry_id(event["position"]) for event in log if event["position"] not in hole
        ]
        assert after["position"] == log[-1]["position"]
        await stop_cleanly(scratch, frozen.server_a, frozen.server_b)
