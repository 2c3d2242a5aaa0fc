"""Stopping ``spool serve`` (a real subprocess on the embedded services) with streams open.

1. 100 SSE clients (half on a session's stream, half on the tenant firehose) and a turn
   streaming its reply: on SIGTERM each client gets the final comment and a clean end of the
   response, the process exits 0 within SPOOL_SHUTDOWN_SECONDS, and on a restarted server (same
   data dir) every client resumes from its last id with no gap and no duplicate while the turn
   completes exactly once, taken over at once (the lease was handed back: SPOOL_LEASE_SECONDS
   is 300 here, longer than the test may wait).
2. A second signal exits at once (128 + the signal) while the first stop still waits on a
   running turn step, and the embedded services still stop.
3. Ctrl-C in a terminal (SIGINT to the whole foreground process group): the services, in their
   own session, do not get it; the engine drains before they stop (no ``dispatch.redis_down``),
   and the exit is 0.

Before the fix, 1 and 2 failed (the server never exited with a stream open; the second SIGTERM
was ignored), and 3 logged ``dispatch.redis_down`` (Valkey died of the SIGINT first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.sse_client import frames
from tests.helpers_processes import Server, Spawner, alive, serve_env, service_pids, wait_gone

pytestmark = pytest.mark.slow

SHUTDOWN_SECONDS = 20.0  # the default is 10; a busy machine may need more for Postgres' stop
FINAL = "closed: server shutting down, reconnect with Last-Event-ID"
CLIENTS = 100
WORDS = 60
REPLY = " ".join(f"w{i}" for i in range(WORDS))
WITHIN = 60.0  # generous waits for things that must happen, on a busy machine


def _start(spawn: Spawner, data_dir: Path, **extra: str) -> Server:
    env = serve_env(data_dir, SPOOL_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS),
                    SPOOL_LEASE_SECONDS="300", **extra)
    server = spawn(data_dir, cwd=data_dir.parent, env=env)
    server.wait_ready()
    return server


async def _setup(url: str, admin: str, delay: float) -> tuple[dict[str, str], str]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        root = {"Authorization": f"Bearer {admin}"}
        tenant = (await client.post("/v1/tenants", json={"name": "t"}, headers=root)).json()["id"]
        created = await client.post("/v1/api_keys", json={"name": "k", "role": "member"},
                                    headers={**root, "Spool-Tenant": tenant})
        auth = {"Authorization": f"Bearer {created.json()['key']}"}
        agent = await client.post("/v1/agents", headers=auth, json={
            "name": "slow", "model": {"script": [{"text": REPLY, "delay": delay}]}})
        assert agent.status_code == 201, agent.text
        session = await client.post("/v1/sessions", headers=auth,
                                    json={"agent_id": agent.json()["id"]})
        assert session.status_code == 201, session.text
        return auth, session.json()["id"]


@dataclass
class Reader:
    """One SSE connection: its frames' ids and types, its comments, how it ended."""

    path: str
    events: list[tuple[int, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    last_was_final: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> int:
        return self.events[-1][0] if self.events else 0

    def open(self, client: httpx.AsyncClient, auth: dict[str, str], *,
             until: str | None = None) -> None:
        headers = dict(auth)
        if self.events:
            headers["Last-Event-ID"] = str(self.last_id)
        self.task = asyncio.create_task(self._read(client, headers, until))

    async def _read(self, client: httpx.AsyncClient, headers: dict[str, str],
                    until: str | None) -> None:
        async with client.stream("GET", self.path, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            async for frame in frames(response):
                self.last_was_final = frame.comment == FINAL
                if frame.comment is not None:
                    self.comments.append(frame.comment)
                if frame.id is not None:
                    assert frame.event is not None
                    self.events.append((int(frame.id), frame.event))
                    if frame.event == until:
                        return

    async def ended(self) -> None:
        """The response ended cleanly (the server closed it), or raise what ended it."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), WITHIN)


async def _log(client: httpx.AsyncClient, auth: dict[str, str], path: str,
               by: str) -> list[Any]:
    """Every event of a paged log (``by``: the id it pages by, seq or position)."""
    data: list[Any] = []
    while True:
        after = data[-1][by] if data else 0
        page = (await client.get(f"{path}?after={after}&limit=500", headers=auth)).json()
        data.extend(page["data"])
        if not page["has_more"]:
            return data


async def _wait_for(condition: Any, what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(0.05)


def _refused(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def test_sigterm_with_100_streams_open_and_a_turn_streaming(
    spawn: Spawner, scratch: Path
) -> None:
    data_dir = scratch / "data"
    server = _start(spawn, data_dir)
    admin = server.admin_token()
    assert admin is not None, server.output()
    auth, sid = await _setup(server.url, admin, delay=0.1)
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(10, read=WITHIN)
    readers = [Reader(f"/v1/sessions/{sid}/stream" if i % 2 else "/v1/events/stream")
               for i in range(CLIENTS)]

    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as http:
        for reader in readers:
            reader.open(http, auth)
        sent = await http.post(f"/v1/sessions/{sid}/messages", headers=auth,
                               json={"content": "go"})
        assert sent.status_code == 202, sent.text
        turn_id = sent.json()["event"]["data"]["turn_id"]

        async def replying() -> bool:  # every client is a few words into the reply
            return all(sum(t == "message_delta" for _, t in r.events) >= 3 for r in readers)

        await _wait_for(replying, "every client saw 3 deltas")
        os.kill(server.pid, signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(server.proc.wait, SHUTDOWN_SECONDS + 20)
        stopped_in = time.monotonic() - started
        assert code == 0, server.output()
        assert stopped_in < SHUTDOWN_SECONDS + 5, f"{stopped_in:.1f}s\n{server.output()}"
        for reader in readers:
            await reader.ended()  # a clean end of the response, not a broken connection
            assert reader.last_was_final, (reader.path, reader.comments[-3:])
        assert _refused(server.url)
        assert wait_gone(data_dir) == [], "a service outlived the stop"
        deltas_before = max(sum(t == "message_delta" for _, t in r.events) for r in readers)
        assert deltas_before < WORDS, "the whole reply streamed before the stop"

    again = _start(spawn, data_dir)
    async with httpx.AsyncClient(base_url=again.url, limits=limits, timeout=timeout) as http:
        for reader in readers:
            reader.open(http, auth, until="session_done")
        for reader in readers:
            await reader.ended()
        session_log = await _log(http, auth, f"/v1/sessions/{sid}/events", "seq")
        tenant_log = await _log(http, auth, "/v1/events", "position")
        assert (await http.get(f"/v1/sessions/{sid}", headers=auth)).json()["status"] == "idle"
    assert again.stop() == 0, again.output()

    seqs = [e["seq"] for e in session_log]
    positions = [e["position"] for e in tenant_log]
    for reader in readers:
        ids = [i for i, _ in reader.events]
        expected = seqs if "/sessions/" in reader.path else positions
        assert ids == expected, f"{reader.path}: a gap or a duplicate across the restart"
    kinds = [e["type"] for e in session_log]
    assert kinds.count("turn_started") == 1
    done = [e["data"] for e in session_log if e["type"] == "session_done"]
    assert done == [{"type": "session_done", "turn_id": turn_id, "status": "completed"}]
    assert kinds[-1] == "session_done"
    assert "".join(e["data"]["text"] for e in session_log
                   if e["type"] == "message_delta").endswith(REPLY)

    # the embedded Valkey's password (item 18) is in no log line
    password = re.search(r"^requirepass (\S+)$",
                         (data_dir / "valkey" / "auth.conf").read_text(), re.MULTILINE)
    assert password is not None
    for each in (server, again):
        assert password.group(1) not in each.output()


async def test_a_second_signal_exits_at_once(spawn: Spawner, scratch: Path) -> None:
    data_dir = scratch / "data"
    env = serve_env(data_dir, SPOOL_SHUTDOWN_SECONDS="120", SPOOL_LEASE_SECONDS="300")
    server = spawn(data_dir, cwd=scratch, env=env)
    url = await asyncio.to_thread(server.wait_ready)
    admin = server.admin_token()
    assert admin is not None
    pids = service_pids(data_dir)
    auth, sid = await _setup(url, admin, delay=1.0)  # a step that lasts a minute (the most)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        sent = await http.post(f"/v1/sessions/{sid}/messages", headers=auth,
                               json={"content": "go"})
        assert sent.status_code == 202, sent.text

        async def streaming() -> bool:
            events = (await http.get(f"/v1/sessions/{sid}/events", headers=auth)).json()
            return any(e["type"] == "message_start" for e in events["data"])

        await _wait_for(streaming, "the reply started")
    os.kill(server.pid, signal.SIGTERM)
    await _wait_for(_logged(server, "shutdown.started"), "the first SIGTERM was taken")
    await asyncio.sleep(0.5)  # the worker is now waiting on the running step (for 60 s)
    assert server.proc.poll() is None, "the first SIGTERM did not wait for the step"

    os.kill(server.pid, signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.to_thread(server.proc.wait, 30)
    assert time.monotonic() - started < 10, "the second signal did not exit at once"
    assert code == 128 + signal.SIGTERM, server.output()
    assert any("shutdown.forced" in line for line in server.stdout), server.output()
    assert wait_gone(data_dir) == [], "the services were not asked to stop"
    for name, pid in pids.items():
        assert not alive(pid), f"{name} outlived the forced exit"


def _logged(server: Server, event: str) -> Any:
    async def found() -> bool:
        return any(_event(line) == event for line in list(server.stdout))

    return found


def _event(line: str) -> str | None:
    with contextlib.suppress(ValueError):
        record = json.loads(line)
        if isinstance(record, dict):
            return record.get("event")
    return None


def test_ctrl_c_to_the_process_group_stops_the_services_in_order(
    spawn: Spawner, scratch: Path
) -> None:
    data_dir = scratch / "data"
    # a job of its own, as a shell puts each foreground command in its own process group
    argv = [sys.executable, "-c", "import os, sys; os.setpgid(0, 0); os.execv(sys.executable, "
            "[sys.executable, '-m', 'spool.cli', 'serve', '--port', '0'])"]
    server = spawn(data_dir, cwd=scratch, env=serve_env(data_dir), argv=argv)
    url = server.wait_ready()
    pids = service_pids(data_dir)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
    assert os.getpgid(server.pid) == server.pid

    os.killpg(server.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    code = server.proc.wait(timeout=SHUTDOWN_SECONDS + 20)
    for thread in server._threads:
        thread.join(timeout=10)
    assert code == 0, server.output()
    events = [_event(line) for line in server.stdout]
    assert "dispatch.redis_down" not in events, server.output()
    assert "shutdown.done" in events, server.output()
    assert wait_gone(data_dir) == []
    for name, pid in pids.items():
        assert not alive(pid), f"{name} outlived spool serve"


_SIGNALLED_WHILE_LOGGING = """
import asyncio, os, signal, threading
from engine.logging import configure_logging
from spool.server.shutdown import Stopping, log

configure_logging("info")


class Engine:
    def stop_services_now(self) -> None:
        pass


async def main() -> None:
    for attempt in range(200):
        stopping = Stopping(Engine(), None, 10.0)
        handled = threading.Event()

        def handler(sig: int, frame: object) -> None:
            stopping.signalled(sig)
            handled.set()

        signal.signal(signal.SIGTERM, handler)
        threading.Timer(0.001, os.kill, (os.getpid(), signal.SIGTERM)).start()
        while not handled.is_set():  # the signal lands inside one of these writes, mostly
            log.info("test.spam", attempt=attempt)
        await asyncio.sleep(0)  # what the handler left for the loop runs
        stopping.done()
    print("all handled", flush=True)


asyncio.run(main())
"""


def test_a_signal_during_a_log_write_is_handled() -> None:
    """A signal handler runs between two bytecodes of the main thread, often inside a log write
    holding structlog's non-reentrant lock: one that logs itself waits for ever (spool serve
    then ignored SIGTERM; it happened in test_serve once in four runs)."""
    done = subprocess.run([sys.executable, "-c", _SIGNALLED_WHILE_LOGGING], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("all handled")
