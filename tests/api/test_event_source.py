"""A long-lived browser stream survives its stream token's expiry: a real ``EventSource``
(Node's ``eventsource`` package, which like a browser keeps its URL and takes a 401 as final)
reads a session through a proxy whose connections the test cuts. After the token expired it
reconnects with Last-Event-ID and carries on with no gap and no duplicate; a fresh connection
with that token is 401, and so is a resume once the key behind it is revoked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Live
from tests.conftest import ADMIN_TOKEN

EVENTSOURCE = "eventsource@2.0.2"
SESSION_EVENTS = ["session_created", "user_message", "session_archived"]

_CLIENT_JS = """
const EventSource = require(process.argv[2]);
const types = JSON.parse(process.argv[4]);
const source = new EventSource(process.argv[3]);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\\n");
source.onopen = () => out({kind: "open"});
source.onerror = (e) => {
  out({kind: "error", status: e.status || null});
  setImmediate(() => out({kind: "state", state: source.readyState}));  // after its reaction
};
for (const type of types) {
  source.addEventListener(type, (e) => out({kind: "event", type, id: e.lastEventId}));
}
"""


@pytest.fixture(scope="module")
def eventsource(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The npm package, installed once for this module: the path to require."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the EventSource test in CI")
        pytest.skip("node and npm are not installed")
    prefix = tmp_path_factory.mktemp("eventsource")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                    "--silent", EVENTSOURCE], check=True, timeout=300)
    (prefix / "client.js").write_text(_CLIENT_JS)
    yield prefix


class Proxy:
    """A TCP proxy in front of the server, so the test can cut every connection at once (a
    network blip, as the browser sees it)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.transport.abort()


class Browser:
    """The EventSource in a node process; what it saw, one JSON line each."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            self.seen.append(json.loads(line))
            self._changed.set()

    @property
    def ids(self) -> list[int]:
        return [int(line["id"]) for line in self.seen if line["kind"] == "event"]

    def count(self, kind: str) -> int:
        return sum(1 for line in self.seen if line["kind"] == kind)

    async def until(self, what: str, done: Any, within: float = 30) -> None:
        try:
            async with asyncio.timeout(within):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {within} s; the page saw {self.seen}") from None


@contextlib.asynccontextmanager
async def browser(eventsource: Path, url: str) -> AsyncIterator[Browser]:
    process = await asyncio.create_subprocess_exec(
        "node", str(eventsource / "client.js"), str(eventsource / "node_modules" / "eventsource"),
        url, json.dumps(SESSION_EVENTS), stdout=asyncio.subprocess.PIPE)
    try:
        yield Browser(process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_an_event_source_outlives_its_token_and_resumes_without_gap(
    live: Live, eventsource: Path
) -> None:
    tenant = (await live.post("/v1/tenants", ADMIN_TOKEN, {"name": "web"})).json()["id"]
    made = await live.post("/v1/api_keys", ADMIN_TOKEN, {"name": "ui", "role": "member"},
                           **{"Spool-Tenant": tenant})
    key, key_id = made.json()["key"], made.json()["id"]
    sid = await live.session(key)
    for text in ("a", "b"):
        await live.say(key, sid, text)
    created = await live.post("/v1/stream_tokens", key, {"session_id": sid, "ttl_seconds": 10})
    token = created.json()["token"]
    path = f"/v1/sessions/{sid}/stream?access_token={token}"
    proxy = Proxy(int(live.base_url.rsplit(":", 1)[1]))
    port = await proxy.start()
    try:
        async with browser(eventsource, f"http://127.0.0.1:{port}{path}") as page:
            await page.until("the first events", lambda: len(page.ids) >= 3)
            # The token expires (no waiting 10 s: its expiry is moved to the past), then the
            # network drops the connection, and more happens meanwhile.
            await live.engine._pool.execute(
                "UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
            proxy.cut()
            for text in ("c", "d"):
                await live.say(key, sid, text)
            await page.until("a resume", lambda: len(page.ids) >= 5)
            await live.say(key, sid, "e")
            await page.until("live again", lambda: len(page.ids) >= 6)
            assert page.ids == [1, 2, 3, 4, 5, 6]  # no gap, no duplicate
            assert page.count("open") == 2

            # A fresh connection with the expired token (no Last-Event-ID) is refused...
            fresh = await live.client.get(path)
            assert fresh.status_code == 401 and "expired" in fresh.json()["error"]["message"]
            # ... and once its key is revoked, so is the resume: the server closes the stream,
            # EventSource reconnects with Last-Event-ID, gets 401 and stops.
            revoked = await live.client.delete(f"/v1/api_keys/{key_id}", headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}", "Spool-Tenant": tenant})
            assert revoked.status_code == 200, revoked.text
            await page.until("the end", lambda: page.seen[-1] == {"kind": "state", "state": 2})
            assert {"kind": "error", "status": 401} in page.seen  # and CLOSED (2) for good
            assert page.ids == [1, 2, 3, 4, 5, 6]
    finally:
        await proxy.stop()


async def test_a_resume_is_allowed_only_within_the_resume_window(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    token = (await live.post("/v1/stream_tokens", key, {"session_id": sid})).json()["token"]
    pool = live.engine._pool
    path = f"/v1/sessions/{sid}/stream?access_token={token}"
    window = live.engine.settings.stream_token_resume_seconds

    async def status(**headers: str) -> tuple[int, str]:
        async with live.client.stream("GET", path, headers=headers) as response:
            body = b"" if response.status_code == 200 else await response.aread()
            return response.status_code, body.decode()

    await pool.execute("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
    assert (await status(**{"Last-Event-ID": "1"}))[0] == 200
    code, body = await status()
    assert code == 401 and "expired" in body
    await pool.execute("UPDATE stream_tokens SET expires_at = now() - make_interval("
                       "secs => $1 + 1)", window)
    code, body = await status(**{"Last-Event-ID": "1"})
    assert code == 401 and "past the time it may resume" in body
    # an empty Last-Event-ID resumes nothing: it counts as a fresh connection
    assert (await status(**{"Last-Event-ID": ""}))[0] == 401
    # the scope still holds on a resume: another session's stream is 403
    other = await live.session(key)
    await pool.execute("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
    refused = await live.client.get(f"/v1/sessions/{other}/stream?access_token={token}",
                                    headers={"Last-Event-ID": "1"})
    assert refused.status_code == 403
