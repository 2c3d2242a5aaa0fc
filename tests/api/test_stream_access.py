"""Suspension and revocation reach what is running, over real sockets (uvicorn): a revoked key's
streams (opened with it, or with a stream token it asked for) end with a final comment saying
why, in this process and in another one on the same database and Redis (also when that one
missed the Redis message); suspending a tenant closes all its streams and ends its running and
queued turns, each with one ``session_done{cancelled}``; nothing of another tenant's is
touched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from engine.engine import Engine
from engine.events import ContentBlock, UserMessage, new_event
from engine.ids import new_id
from engine.settings import Settings
from tests.api.conftest import Live, serving
from tests.api.sse_client import Frame
from tests.conftest import ADMIN_TOKEN
from tests.helpers_sse import collect

REVOKED = "closed: the API key of this stream was revoked"
SUSPENDED = "closed: the tenant is suspended"


_readers: list[Reader] = []


@pytest.fixture(autouse=True)
async def _stop_readers(live: Live) -> AsyncIterator[None]:
    """Every reader is stopped before its server is (a server waits for open streams)."""
    yield
    await stop_all()


async def stop_all() -> None:
    while _readers:
        await _readers.pop().stop()


class Reader:
    """One SSE connection read in the background: its events, and the comment it ended with."""

    def __init__(self, client: httpx.AsyncClient, path: str, key: str | None = None) -> None:
        _readers.append(self)
        self.events: list[Frame] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self._changed = asyncio.Event()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._task = asyncio.create_task(self._run(client, path, headers))

    async def _run(self, client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        try:
            async with client.stream("GET", path, headers=headers, timeout=None) as response:
                self.status = response.status_code
                await collect(response, self.events, self.comments, self._changed)
        finally:
            self._changed.set()

    @property
    def ended(self) -> bool:
        return self._task.done()

    async def wait_for(self, count: int, within: float = 30) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                assert not self.ended, f"ended after {len(self.events)} events: {self.comments}"
                self._changed.clear()
                await self._changed.wait()

    async def wait_ended(self, within: float = 30) -> None:
        with contextlib.suppress(httpx.HTTPError):
            async with asyncio.timeout(within):
                await self._task

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


async def new_key(live: Live, tenant: str, role: str = "member") -> tuple[str, str]:
    response = await live.post("/v1/api_keys", ADMIN_TOKEN, {"name": role, "role": role},
                               **{"Spool-Tenant": tenant})
    assert response.status_code == 201, response.text
    return response.json()["key"], response.json()["id"]


async def new_tenant(live: Live, name: str = "t") -> str:
    response = await live.post("/v1/tenants", ADMIN_TOKEN, {"name": name})
    assert response.status_code == 201, response.text
    tenant: str = response.json()["id"]
    return tenant


async def stream_token(live: Live, key: str, **body: object) -> str:
    response = await live.post("/v1/stream_tokens", key, body)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def revoke(live: Live, tenant: str, key_id: str) -> None:
    response = await live.client.delete(f"/v1/api_keys/{key_id}", headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Spool-Tenant": tenant})
    assert response.status_code == 200, response.text


async def opened(readers: list[Reader], count: int = 1) -> None:
    for reader in readers:
        await reader.wait_for(count)


async def test_revoking_a_key_closes_the_streams_it_and_its_tokens_opened(live: Live) -> None:
    tenant = await new_tenant(live)
    key, key_id = await new_key(live, tenant)
    other_key, _ = await new_key(live, tenant)
    sid = await live.session(other_key)
    token = await stream_token(live, key)
    session_token = await stream_token(live, key, session_id=sid)
    client = live.client
    doomed = [Reader(client, f"/v1/sessions/{sid}/stream", key),
              Reader(client, "/v1/events/stream", key),
              Reader(client, f"/v1/events/stream?access_token={token}"),
              Reader(client, f"/v1/sessions/{sid}/stream?access_token={session_token}")]
    kept = [Reader(client, f"/v1/sessions/{sid}/stream", other_key),
            Reader(client, f"/v1/events/stream?access_token={await stream_token(live, other_key)}")]
    await opened(doomed + kept)

    await revoke(live, tenant, key_id)
    for reader in doomed:
        await reader.wait_ended()
        assert reader.comments[-1:] == [REVOKED], reader.comments
    assert len(live.engine.open_streams) == len(kept)
    # the other key's streams go on
    await live.say(other_key, sid, "still here")
    await opened(kept, 2)
    assert not any(reader.ended for reader in kept)
    # and what was closed cannot come back, not even resuming by id
    refused = await client.get(f"/v1/events/stream?access_token={token}",
                               headers={"Last-Event-ID": "1"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


async def test_suspending_a_tenant_closes_its_streams_and_cancels_its_turns(live: Live) -> None:
    tenant, other = await new_tenant(live, "a"), await new_tenant(live, "b")
    key, _ = await new_key(live, tenant)
    other_key, _ = await new_key(live, other)
    slow = {"text": " ".join(f"w{n}" for n in range(200)), "delay": 0.1}  # 20 s of reply
    created = await live.post("/v1/agents", key, {"name": "slow", "model": {
        "adapter": "scripted", "script": [slow, slow]}})
    assert created.status_code == 201, created.text
    response = await live.post("/v1/sessions", key, {"agent_id": created.json()["id"]})
    sid = response.json()["id"]
    other_sid = await live.session(other_key)
    client = live.client
    streams = [Reader(client, f"/v1/sessions/{sid}/stream", key),
               Reader(client, "/v1/events/stream", key),
               Reader(client, f"/v1/events/stream?access_token={await stream_token(live, key)}")]
    others = [Reader(client, f"/v1/sessions/{other_sid}/stream", other_key),
              Reader(client, "/v1/events/stream", other_key)]
    await opened(streams + others)
    running = await live.post(f"/v1/sessions/{sid}/messages", key, {"content": "go"})
    queued = await live.post(f"/v1/sessions/{sid}/messages?mode=enqueue", key,
                             {"content": "then this"})
    assert running.status_code == queued.status_code == 202, queued.text
    await streams[0].wait_for(6)  # created, 2 messages, turn_started, message_start, a delta

    suspended = await live.post(f"/v1/tenants/{tenant}/suspend", ADMIN_TOKEN, {})
    assert suspended.status_code == 200, suspended.text
    for reader in streams:
        await reader.wait_ended()
        assert reader.comments[-1:] == [SUSPENDED], reader.comments

    turns = {running.json()["event"]["data"]["turn_id"],
             queued.json()["event"]["data"]["turn_id"]}
    events = await _until_turns_end(live.engine, tenant, sid, len(turns))
    done = [e["data"] for e in events if e["type"] == "session_done"]
    assert sorted(d["turn_id"] for d in done) == sorted(turns)  # one each, no more
    assert all((d["status"], d.get("error")) == ("cancelled", "tenant suspended") for d in done)
    interrupts = [e["data"] for e in events if e["type"] == "session_interrupted"]
    assert {i["turn_id"] for i in interrupts} == turns
    assert all(i["reason"] == "tenant suspended" for i in interrupts)
    stops = [e["data"]["stop_reason"] for e in events if e["type"] == "message_stop"]
    assert stops == ["interrupted"]  # the reply was cut, and the queued turn never started
    assert [e["type"] for e in events].count("turn_started") == 1
    # the tenant's keys and tokens open nothing now; the other tenant's streams go on
    refused = await client.get("/v1/events/stream", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    await live.say(other_key, other_sid, "unaffected")
    await opened(others, 2)
    assert not any(reader.ended for reader in others)


async def _until_turns_end(engine: Engine, tenant: str, sid: str,
                           turns: int) -> list[dict[str, Any]]:
    """The session's log once ``turns`` turns have ended (read from the store: the tenant's
    keys are refused now), and a moment more, for anything that would wrongly follow."""
    async with asyncio.timeout(30):
        while True:
            events = await engine.store.read_stream(sid, tenant_id=tenant, after=0, limit=1000)
            if [e.type for e in events].count("session_done") >= turns:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    events = await engine.store.read_stream(sid, tenant_id=tenant, after=0, limit=1000)
    return [msgspec.json.decode(msgspec.json.encode(e)) for e in events]


async def test_a_revocation_through_one_process_closes_the_stream_on_another(
    live: Live, settings: Settings
) -> None:
    """B re-checks only every 60 s here: what closes its streams at once is A's message."""
    slow = msgspec.structs.replace(settings, auth_cache_seconds=60)
    async with Engine(slow) as engine_b, serving(engine_b, slow) as server_b:
        await asyncio.wait_for(engine_b.access.subscribed.wait(), 30)
        tenant = await new_tenant(live)
        key, key_id = await new_key(live, tenant)
        sid = await live.session(key)
        on_b = Reader(server_b.client, f"/v1/sessions/{sid}/stream", key)
        token_on_b = Reader(server_b.client,
                            f"/v1/events/stream?access_token={await stream_token(live, key)}")
        await opened([on_b, token_on_b])
        await revoke(live, tenant, key_id)  # through A
        try:
            for reader in (on_b, token_on_b):
                await reader.wait_ended()
                assert reader.comments[-1:] == [REVOKED], reader.comments
            assert len(engine_b.open_streams) == 0
        finally:
            await stop_all()


async def test_a_process_that_missed_the_message_still_closes_within_the_cache_time(
    live: Live, settings: Settings
) -> None:
    """Redis is only the fast path: B, not subscribed (as while Redis is down), finds the
    revocation by re-checking its open streams' credentials."""
    async with Engine(settings) as engine_b, serving(engine_b, settings) as server_b:
        await engine_b.access.stop_listening()
        tenant = await new_tenant(live)
        key, key_id = await new_key(live, tenant)
        sid = await live.session(key)
        on_b = Reader(server_b.client, f"/v1/sessions/{sid}/stream", key)
        await opened([on_b])
        await revoke(live, tenant, key_id)
        try:
            await on_b.wait_ended()
            assert on_b.comments[-1:] == [REVOKED], on_b.comments
        finally:
            await stop_all()


async def test_a_turn_submitted_as_the_tenant_is_suspended_never_starts(live: Live) -> None:
    """A message accepted in the moment of the suspension (authenticated just before it, or
    through another process's cached authentication) lands after the sweep: the runtime checks
    the tenant before it starts a turn, and ends it cancelled."""
    tenant = await new_tenant(live)
    key, _ = await new_key(live, tenant)
    created = await live.post("/v1/agents", key, {"name": "a", "model": {"adapter": "scripted"}})
    sid = (await live.post("/v1/sessions", key, {"agent_id": created.json()["id"]})).json()["id"]
    suspended = await live.post(f"/v1/tenants/{tenant}/suspend", ADMIN_TOKEN, {})
    assert suspended.status_code == 200, suspended.text
    message = UserMessage(turn_id=new_id("turn"), content=[ContentBlock(text="late")])
    await live.engine.store.append(sid, [new_event(message)], tenant_id=tenant,
                                   stream_type="session", expected_seq=1)
    events = await _until_turns_end(live.engine, tenant, sid, 1)
    assert [e["type"] for e in events] == ["session_created", "user_message", "session_done"]
    assert events[-1]["data"] == {"type": "session_done", "turn_id": message.turn_id,
                                  "status": "cancelled", "error": "tenant suspended"}
