"""``spool worker`` as real processes: a worker SIGKILLed in the middle of a reply loses its
lease, and another worker finishes the turn exactly once; the log shows what happened."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from engine.infra.embedded import SERVICES_FILE, published_services
from tests.conftest import ADMIN_TOKEN, Services
from tests.helpers_processes import Server, Spawner, serve_env

pytestmark = pytest.mark.slow

WORKER = re.compile(r"^agentspool worker (wrk_\S+) running")
REPLY = " ".join(f"word{i}" for i in range(30))


def _worker_argv() -> list[str]:
    return [sys.executable, "-m", "spool.cli", "worker", "--concurrency", "2"]


def _wait_line(server: Server, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.stdout):
            if match := pattern.match(line):
                return match
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern.pattern!r}\n{server.output()}")


async def _setup(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = (await client.post("/v1/tenants", json={"name": "t"}, headers=admin)).json()["id"]
    key = (await client.post("/v1/api_keys", json={"name": "k", "role": "member"},
                             headers={**admin, "Spool-Tenant": tenant})).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    agent = (await client.post("/v1/agents", headers=auth, json={
        "name": "slow", "model": {"script": [{"text": REPLY, "delay": 0.1}]}})).json()["id"]
    session = (await client.post("/v1/sessions", headers=auth,
                                 json={"agent_id": agent})).json()["id"]
    return auth, session


async def _server_without_workers(spawn: Spawner, data_dir: Path, urls: dict[str, str]) -> str:
    """``spool serve`` with no worker of its own (the test's workers run the turns); its URL."""
    server = spawn(data_dir, cwd=data_dir.parent,
                   env=serve_env(data_dir, SPOOL_WORKERS="0", **urls))
    return await asyncio.to_thread(server.wait_ready)


async def _worker(spawn: Spawner, data_dir: Path, urls: dict[str, str]) -> tuple[Server, str]:
    """A ``spool worker`` process, once it runs, and the worker id it announced."""
    worker = spawn(data_dir, cwd=data_dir.parent, env=serve_env(data_dir, **urls),
                   argv=_worker_argv())
    return worker, (await asyncio.to_thread(_wait_line, worker, WORKER)).group(1)


async def _until_deltas(client: httpx.AsyncClient, auth: dict[str, str], sid: str,
                        count: int) -> None:
    async with asyncio.timeout(30):
        while sum(e["type"] == "message_delta"  # noqa: ASYNC110 - polling over HTTP
                  for e in await _events(client, auth, sid)) < count:
            await asyncio.sleep(0.05)


async def _until_idle(client: httpx.AsyncClient, auth: dict[str, str], sid: str) -> None:
    async with asyncio.timeout(60):
        while (await client.get(  # noqa: ASYNC110 - polling over HTTP
                f"/v1/sessions/{sid}", headers=auth)).json()["status"] != "idle":
            await asyncio.sleep(0.1)


async def _events(client: httpx.AsyncClient, auth: dict[str, str], sid: str) -> list[Any]:
    page = await client.get(f"/v1/sessions/{sid}/events?limit=500", headers=auth)
    return list(page.json()["data"])


class _MidReply(NamedTuple):
    client: httpx.AsyncClient
    auth: dict[str, str]
    sid: str
    turn_id: str
    first: Server  # worker A
    worker_a: str


@asynccontextmanager
async def _a_few_words_in(spawn: Spawner, scratch: Path,
                          urls: dict[str, str]) -> AsyncIterator[_MidReply]:
    """``spool serve`` without workers, worker A, and a session A runs a turn of: A is a few
    words into its reply. The client is closed on the way out."""
    url = await _server_without_workers(spawn, scratch / "serve", urls)
    first, worker_a = await _worker(spawn, scratch / "a", urls)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        auth, sid = await _setup(client)
        sent = await client.post(f"/v1/sessions/{sid}/messages", headers=auth,
                                 json={"content": "tell me"})
        turn_id = sent.json()["event"]["data"]["turn_id"]
        await _until_deltas(client, auth, sid, 3)
        yield _MidReply(client, auth, sid, turn_id, first, worker_a)


async def test_a_worker_killed_mid_turn_and_the_next_one_finishes_it(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str,
) -> None:
    urls = {"SPOOL_DATABASE_URL": await services.fresh_database(), "SPOOL_REDIS_URL": redis_url,
            "SPOOL_ADMIN_TOKEN": ADMIN_TOKEN, "SPOOL_LEASE_SECONDS": "2"}
    async with _a_few_words_in(spawn, scratch, urls) as (
            client, auth, sid, turn_id, first, worker_a):
        assert await asyncio.to_thread(first.stop, signal.SIGKILL) == -signal.SIGKILL
        cut = len(await _events(client, auth, sid))

        second, worker_b = await _worker(spawn, scratch / "b", urls)
        await _until_idle(client, auth, sid)
        events = await _events(client, auth, sid)
        assert await asyncio.to_thread(second.stop) == 0

    kinds = [e["type"] for e in events]
    actors = [e["meta"].get("actor") for e in events]
    # A: turn_started, message_start, its deltas (at least 3, not the whole reply); then B only.
    assert kinds[2:4] == ["turn_started", "message_start"]
    assert set(actors[2:cut]) == {worker_a}
    assert set(actors[cut:]) == {worker_b}, "the dead worker wrote after the takeover"
    a_deltas = [e for e in events[:cut] if e["type"] == "message_delta"]
    assert 3 <= len(a_deltas) < len(REPLY.split())
    # B closes A's message as interrupted, then replies in full, once, and ends the turn once.
    assert events[cut]["type"] == "message_stop"
    assert events[cut]["data"]["stop_reason"] == "interrupted"
    assert events[cut]["data"]["message_id"] == events[3]["data"]["message_id"]
    replies = [e for e in events[cut:] if e["type"] == "message_delta"]
    assert "".join(e["data"]["text"] for e in replies) == REPLY
    assert kinds.count("turn_started") == 1
    done = [e["data"] for e in events if e["type"] == "session_done"]
    assert done == [{"type": "session_done", "turn_id": turn_id, "status": "completed"}]
    assert kinds[-1] == "session_done"


async def test_a_worker_stopped_mid_reply_finishes_the_step_and_hands_the_session_back(
    spawn: Spawner, scratch: Path, services: Services, redis_url: str,
) -> None:
    """SIGTERM: the worker ends the model call it is in (its message_stop and spend are its
    own), starts no other step, gives the lease back and exits 0; the next worker ends the turn
    at once (the lease would have lasted SPOOL_LEASE_SECONDS=300), without a second reply."""
    urls = {"SPOOL_DATABASE_URL": await services.fresh_database(), "SPOOL_REDIS_URL": redis_url,
            "SPOOL_ADMIN_TOKEN": ADMIN_TOKEN, "SPOOL_LEASE_SECONDS": "300",
            "SPOOL_SHUTDOWN_SECONDS": "60"}
    async with _a_few_words_in(spawn, scratch, urls) as (
            client, auth, sid, turn_id, first, worker_a):
        assert await asyncio.to_thread(first.stop, signal.SIGTERM, 60) == 0, first.output()
        by_a = await _events(client, auth, sid)
        assert [e["type"] for e in by_a][-2:] == ["message_stop", "spend_recorded"]
        assert by_a[-2]["data"]["stop_reason"] == "end_turn"

        second, worker_b = await _worker(spawn, scratch / "b", urls)
        await _until_idle(client, auth, sid)
        events = await _events(client, auth, sid)
        assert await asyncio.to_thread(second.stop) == 0

    assert {e["meta"].get("actor") for e in events[2:len(by_a)]} == {worker_a}
    assert [(e["type"], e["meta"].get("actor")) for e in events[len(by_a):]] == [
        ("session_done", worker_b)]
    assert "".join(e["data"]["text"] for e in events if e["type"] == "message_delta") == REPLY
    done = [e["data"] for e in events if e["type"] == "session_done"]
    assert done == [{"type": "session_done", "turn_id": turn_id, "status": "completed"}]


def test_a_worker_without_services_says_where_it_looked(spawn: Spawner, scratch: Path) -> None:
    data_dir = scratch / "nothing-here"
    worker = spawn(data_dir, cwd=scratch, env=serve_env(data_dir), argv=_worker_argv())
    assert worker.proc.wait(timeout=60) == 2
    for reader in worker._threads:  # the whole output is read
        reader.join(timeout=10)
    assert "no running `spool serve`" in "\n".join(worker.stderr)
    assert str(data_dir.resolve()) in "\n".join(worker.stderr)


def test_published_services_are_read_from_the_data_dir(tmp_path: Path) -> None:
    assert published_services(tmp_path) is None
    (tmp_path / SERVICES_FILE).write_text(
        '{"database_url": "postgresql://x/y", "redis_url": "redis://z:1/0"}')
    assert published_services(tmp_path) == ("postgresql://x/y", "redis://z:1/0")
