"""``spool serve --processes 2`` as a real subprocess on the embedded services: two server
processes (children of the one started) on one port.

1. Both serve: with either child stopped (SIGSTOP), a fresh connection is answered, so by the
   other; an SSE client that only one child can have accepted receives an event appended
   through the other (which only the other can have served). Exactly one admin token line.
   SIGTERM to the parent: the stream gets the final comment, the exit is 0, and nothing that
   ran in the data dir (children, Postgres, Valkey) is left.
2. Ctrl-C (SIGINT to the foreground process group) stops everything cleanly, the services last.
3. A child killed: the parent logs it, stops the other and the services, and exits 1.
4. The parent killed: the children notice (their stdin ends) and stop on their own.
5. A second signal, while the first stop waits for a child (frozen), exits at once.
6. Children that cannot start (no Postgres): the parent exits 1, having printed no
   ``listening`` line.

Nothing is timed: every wait is a generous bound on something that must happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.sse_client import Frame, frames
from tests.helpers_processes import (
    TOKEN,
    Server,
    Spawner,
    alive,
    children,
    serve_argv,
    serve_env,
    service_pids,
    wait_gone,
)

pytestmark = pytest.mark.slow

FINAL = "closed: server shutting down, reconnect with Last-Event-ID"
WITHIN = 90.0
# A loaded machine can make the embedded Postgres' shutdown checkpoint (its fsyncs) take most of
# serve_env's 25 s: a stop here is two servers' and then the services'.
SHUTDOWN_SECONDS = "60"


def _start(spawn: Spawner, scratch: Path, argv: list[str] | None = None) -> Server:
    """``spool serve --processes 2``, its working directory in its data dir (so /proc shows
    whether any of its processes still runs)."""
    data_dir = scratch / "data"
    data_dir.mkdir()
    server = spawn(data_dir, cwd=data_dir,
                   env=serve_env(data_dir, SPOOL_SHUTDOWN_SECONDS=SHUTDOWN_SECONDS),
                   argv=argv or [*serve_argv(), "--processes", "2"])
    server.wait_ready()
    return server


def _server_processes(server: Server) -> list[int]:
    found = [pid for pid in children(server.pid)
             if b"spool.server.processes" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(found) == 2, (found, server.output())
    return found


@contextlib.contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """``pid`` frozen (SIGSTOP): it accepts nothing until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _events(server: Server) -> list[str]:
    found = []
    for line in server.stdout:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                found.append(record.get("event"))
    return found


def _assert_all_gone(server: Server, pids: list[int]) -> None:
    assert wait_gone(server.data_dir) == [], "left running in the data dir"
    for pid in pids:
        assert not alive(pid), f"pid {pid} outlived spool serve"


async def _setup(url: str, admin: str) -> tuple[dict[str, str], str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        root = {"Authorization": f"Bearer {admin}"}
        tenant = await client.post("/v1/tenants", json={"name": "t"}, headers=root)
        assert tenant.status_code == 201, tenant.text
        created = await client.post("/v1/api_keys", json={"name": "k", "role": "member"},
                                    headers={**root, "Spool-Tenant": tenant.json()["id"]})
        assert created.status_code == 201, created.text
        auth = {"Authorization": f"Bearer {created.json()['key']}"}
        session = await client.post("/v1/sessions", headers=auth, json={})
        assert session.status_code == 201, session.text
        return auth, session.json()["id"]


def _answered(url: str) -> int:
    """A request on a new connection (so it is accepted now, by a process that runs)."""
    with httpx.Client(base_url=url, timeout=WITHIN) as client:
        return client.get("/readyz").status_code


class _Stream:
    """One SSE connection, read until it ends."""

    def __init__(self, url: str, auth: dict[str, str], path: str) -> None:
        self.frames: list[Frame] = []
        self.changed = asyncio.Event()
        self.client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(WITHIN))
        self.task = asyncio.create_task(self._read(auth, path))

    async def _read(self, auth: dict[str, str], path: str) -> None:
        try:
            async with self.client.stream("GET", path, headers=auth) as response:
                assert response.status_code == 200, await response.aread()
                async for frame in frames(response):
                    self.frames.append(frame)
                    self.changed.set()
        finally:
            self.changed.set()

    async def wait_for(self, kind: str) -> None:
        async with asyncio.timeout(WITHIN):
            while not any(frame.event == kind for frame in self.frames):
                if self.task.done():
                    self.task.result()  # raises what ended it
                    raise AssertionError(f"the stream ended before {kind}: {self.frames}")
                self.changed.clear()
                await self.changed.wait()

    async def ended(self) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), WITHIN)

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        await self.client.aclose()


async def test_two_processes_serve_one_port_and_stop_together(
    spawn: Spawner, scratch: Path
) -> None:
    server = _start(spawn, scratch)
    admin = server.admin_token()
    assert admin is not None, server.output()
    first, second = _server_processes(server)
    services = list(service_pids(server.data_dir).values())

    for frozen in (first, second):  # the other one answers
        with _stopped(frozen):
            assert await asyncio.to_thread(_answered, server.url) == 200

    auth, session_id = await _setup(server.url, admin)
    with _stopped(second):  # so accepted by the first
        stream = _Stream(server.url, auth, f"/v1/sessions/{session_id}/stream")
        try:
            await stream.wait_for("session_created")
        except BaseException:
            await stream.aclose()
            raise
    try:
        with _stopped(first):  # so appended through the second
            async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN) as client:
                sent = await client.post(f"/v1/sessions/{session_id}/messages", headers=auth,
                                         json={"content": "across processes"})
            assert sent.status_code == 202, sent.text
        await stream.wait_for("user_message")
        [message] = [frame.envelope for frame in stream.frames if frame.event == "user_message"]
        assert message == sent.json()["event"]

        code = await asyncio.to_thread(server.stop, signal.SIGTERM, WITHIN)
        assert code == 0, server.output()
        await stream.ended()
        assert stream.frames[-1].comment == FINAL, stream.frames[-3:]
    finally:
        await stream.aclose()
    _assert_all_gone(server, [first, second, *services])
    assert sum(bool(TOKEN.match(line)) for line in server.stdout) == 1, server.output()
    assert _events(server).count("shutdown.done") == 3, server.output()  # children, parent
    assert "Traceback" not in "\n".join(server.stderr), server.output()


def test_ctrl_c_to_the_process_group_stops_everything(spawn: Spawner, scratch: Path) -> None:
    # a job of its own, as a shell puts each foreground command in its own process group
    argv = [sys.executable, "-c", "import os, sys; os.setpgid(0, 0); os.execv(sys.executable, "
            "[sys.executable, '-m', 'spool.cli', 'serve', '--port', '0', '--processes', '2'])"]
    server = _start(spawn, scratch, argv)
    pids = [*_server_processes(server), *service_pids(server.data_dir).values()]
    assert _answered(server.url) == 200

    os.killpg(server.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    code = server.proc.wait(timeout=WITHIN)
    for thread in server._threads:
        thread.join(timeout=10)
    assert code == 0, server.output()
    events = _events(server)
    assert "dispatch.redis_down" not in events, server.output()
    assert "shutdown.forced" not in events, server.output()
    assert events.count("shutdown.done") == 3, server.output()
    _assert_all_gone(server, pids)


def test_a_process_that_dies_stops_the_others(spawn: Spawner, scratch: Path) -> None:
    server = _start(spawn, scratch)
    killed, other = _server_processes(server)
    services = list(service_pids(server.data_dir).values())

    os.kill(killed, signal.SIGKILL)
    code = server.proc.wait(timeout=WITHIN)
    for thread in server._threads:
        thread.join(timeout=10)
    assert code == 1, server.output()
    exited: list[dict[str, Any]] = [
        json.loads(line) for line in server.stdout if '"serve.process_exited"' in line]
    assert [(record["pid"], record["exit_code"]) for record in exited] == [
        (killed, -signal.SIGKILL)], server.output()
    assert _events(server).count("shutdown.done") == 1, server.output()  # the other's
    _assert_all_gone(server, [killed, other, *services])


def test_the_processes_stop_when_the_parent_is_killed(spawn: Spawner, scratch: Path) -> None:
    server = _start(spawn, scratch)
    processes = _server_processes(server)

    os.kill(server.pid, signal.SIGKILL)
    assert server.proc.wait(timeout=WITHIN) == -signal.SIGKILL
    for thread in server._threads:  # the children's output too: they wrote to the same pipe
        thread.join(timeout=WITHIN)
    # their output ended: they are exiting
    _wait_for(lambda: not any(alive(pid) for pid in processes), server)
    assert _events(server).count("shutdown.done") == 2, server.output()
    # the embedded services, as after any SIGKILL, are left to the next start (or teardown)


def test_a_second_signal_exits_at_once(spawn: Spawner, scratch: Path) -> None:
    """The first stop waits on a child that cannot stop (frozen before the SIGTERM the parent
    passes on reaches it); the second signal kills it and exits."""
    server = _start(spawn, scratch)
    frozen, other = _server_processes(server)
    services = list(service_pids(server.data_dir).values())

    os.kill(frozen, signal.SIGSTOP)
    os.kill(server.pid, signal.SIGTERM)
    _wait_for(lambda: _events(server).count("shutdown.done") == 1, server)  # the other's
    assert server.proc.poll() is None, server.output()  # still waiting for the frozen one

    os.kill(server.pid, signal.SIGTERM)
    code = server.proc.wait(timeout=WITHIN)
    for thread in server._threads:
        thread.join(timeout=10)
    assert code == 128 + signal.SIGTERM, server.output()
    assert "shutdown.forced" in _events(server), server.output()
    _assert_all_gone(server, [frozen, other, *services])  # the services were asked to stop


def test_processes_that_cannot_start_exit_1(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "data", SPOOL_DATABASE_URL="postgresql://127.0.0.1:1/none",
                    SPOOL_REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([*serve_argv(), "--processes", "2"], env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=WITHIN)
    assert result.returncode == 1, result
    assert "spool: cannot start: Postgres unavailable" in result.stderr, result.stderr
    assert "serve.process_exited" in result.stdout, result.stdout
    assert "listening" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def _wait_for(condition: Callable[[], bool], server: Server) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
