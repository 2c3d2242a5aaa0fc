"""Shared plumbing of the benchmark scripts:

* services: Postgres (and Redis) to measure on, ``SPOOL_DATABASE_URL`` / ``SPOOL_REDIS_URL``
  when set, else embedded ones started in a temporary dir (the servers ``spool serve`` starts)
  and stopped at the end; fresh databases and Redis database numbers per run;
* processes: the server under test (``spool serve``, ``spool worker``, a bare server) in a
  child process of its own, its CPU time and memory; client processes started together;
* HTTP: a tenant, key and session to stream (on a fresh server per run), and a raw SSE
  request on a socket;
* stats: rate sampling, timed page reads, medians and percentiles;
* the command line (the options every script shares) and the output: one JSON line on stdout,
  a human table on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg
import httpx

# The scripts run as `python bench/NAME.py` from a checkout, installed or not.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.infra.db import schema_sql  # noqa: E402
from engine.infra.embedded import EmbeddedServices  # noqa: E402
from tests.helpers import with_database  # noqa: E402 - one copy, shared with the tests

ADMIN_TOKEN = "spa_bench-admin-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Timing:
    """How long one measurement runs: ``warmup`` seconds unmeasured, then ``seconds`` measured."""

    seconds: float
    warmup: float


class Counter:
    """Completed operations of one measurement (asyncio tasks share one without locking)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


# --- services ------------------------------------------------------------------------------------


class Services(NamedTuple):
    postgres_url: str  # the maintenance database
    redis_url: str  # "" when not asked for


@contextlib.contextmanager
def services(*, redis: bool = True) -> Iterator[Services]:
    """Postgres (and Redis unless ``redis=False``): from the environment, or embedded ones for
    the run, in a temporary dir."""
    database_url = os.environ.get("SPOOL_DATABASE_URL") or ""
    redis_url = (os.environ.get("SPOOL_REDIS_URL") or "") if redis else ""
    start_pg, start_redis = not database_url, redis and not redis_url
    if not (start_pg or start_redis):
        yield Services(database_url, redis_url)
        return
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as data_dir:
        log(f"starting embedded {'Postgres ' if start_pg else ''}"
            f"{'Valkey ' if start_redis else ''}in {data_dir}")
        with EmbeddedServices(Path(data_dir), postgres=start_pg,
                              redis=start_redis) as embedded:
            yield Services(database_url or embedded.database_url or "",
                           redis_url or embedded.redis_url or "")


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """The maintenance database URL: SPOOL_DATABASE_URL, or an embedded Postgres for the run."""
    with services(redis=False) as found:
        yield found.postgres_url


def redis_db(url: str, number: int) -> str:
    """The same Redis, database ``number``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


async def flush_redis(url: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@dataclass(frozen=True, slots=True)
class DsnParts:
    """A URL split into the keyword pieces psycopg-style libraries take (host may be a socket
    dir: the embedded Postgres URL carries it as ``?host=/path``)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


def dsn_parts(url: str) -> DsnParts:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return DsnParts(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=parts.path.lstrip("/") or "postgres",
    )


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, *, schema: bool = True) -> AsyncIterator[str]:
    """A new empty database (with schema.sql applied unless told not to), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        if schema:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(schema_sql())
            finally:
                await conn.close()
        yield url
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def server_facts(url: str) -> dict[str, str]:
    """The Postgres settings that decide write throughput, to print beside the figures."""
    conn = await asyncpg.connect(url)
    try:
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                 "max_connections", "shared_buffers")
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await conn.close()


# --- processes -----------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Thousands of sockets: lift the soft open-files limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, the children it reaped and its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    ticks, todo, first = 0, [pid], True
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(current)
            ticks += sum(int(f) for f in fields[11:15]) if first else \
                int(fields[11]) + int(fields[12])
        first = False
        todo += parents.get(current, [])
    return ticks / os.sysconf("SC_CLK_TCK")


class ServiceCpu:
    """CPU seconds of the embedded Postgres (postmaster, its live backends and the reaped ones)
    and Valkey, found through their pid files; nothing for external services."""

    def __init__(self, admin_url: str) -> None:
        self.postmaster: int | None = None
        self.valkey: int | None = None
        if os.environ.get("SPOOL_DATABASE_URL"):
            return
        host = parse_qs(urlsplit(admin_url).query).get("host", [""])[0]
        pg_dir = Path(host) if host else None
        with contextlib.suppress(OSError, ValueError):
            if pg_dir is not None:
                self.postmaster = int((pg_dir / "postmaster.pid").read_text().split()[0])
        with contextlib.suppress(OSError, ValueError):
            if pg_dir is not None and not os.environ.get("SPOOL_REDIS_URL"):
                self.valkey = int((pg_dir.parent / "valkey" / "valkey.pid").read_text().split()[0])

    def postgres_seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        ticks = 0
        with contextlib.suppress(OSError):
            fields = _stat(self.postmaster)
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                fields = _stat(int(entry.name))
                if int(fields[1]) == self.postmaster:
                    ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def valkey_seconds(self) -> float | None:
        if self.valkey is None:
            return None
        with contextlib.suppress(OSError):
            return cpu_seconds(self.valkey)
        return None


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class ServerProcess:
    """A child process (``spool serve``, ``spool worker``, a bare server) that prints a line
    containing ``ready`` once it serves: ``... listening on http://HOST:PORT`` for a server,
    whose address it then takes. ``quiet`` drops its stderr; ``drain`` keeps reading (and
    dropping) its stdout after that line, for a server that logs there (its access log), so
    that a full pipe never stalls it."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str = "server", *,
                 ready: str = "listening on http://", quiet: bool = False) -> None:
        self.argv, self.env, self.name = argv, env, name
        self.ready, self.quiet, self.drain = ready, quiet, False
        self.proc: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None
        self.host, self.port = "127.0.0.1", 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, within: float = 120) -> ServerProcess:
        """Spawn it and wait (at most ``within`` seconds) for its ready line."""
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self._spawn), within)
        except BaseException:
            self.stop()  # ends the reading thread too (end of its output)
            raise
        if "http://" in line:
            host, port = line.strip().rsplit("http://", 1)[1].rsplit(":", 1)
            self.host, self.port = host, int(port)
        return self

    def _spawn(self) -> str:
        raise_fd_limit()  # inherited by the child
        self.proc = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, cwd=REPO_ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if self.quiet else None,
        )
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            if self.ready in line:
                if self.drain:
                    self._drainer = threading.Thread(target=self._drop_output, daemon=True)
                    self._drainer.start()
                return line
        raise RuntimeError(f"{self.name} exited before it was ready")

    def _drop_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._drainer is not None:
            self._drainer.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def start_children(children: list[asyncio.subprocess.Process], argvs: list[list[str]],
                         what: str, *, limit: int) -> None:
    """``python ARGV`` per argv, stdin and stdout piped (``limit``: the longest line read), all
    started before any is waited for; returns once each printed ``ready`` (120 s at most each).
    They are added to ``children`` as they start, so that the caller stops them all if one
    fails."""
    for argv in argvs:
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, *argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
            limit=limit,
        ))
    for child in children:
        assert child.stdout is not None
        async with asyncio.timeout(120):
            line = await child.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"{what} process failed to connect: {line!r}")


async def serve_bare(app: Any, what: str, **config: Any) -> None:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 (no access log), printing the line
    ``ServerProcess`` waits for once it listens: a bare server, the raw limit of a scenario."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           access_log=False, **config))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    print(f"{what} listening on http://{host}:{port}", flush=True)
    await task


# No rate limit and no per-tenant cap of running turns: what measures the engine, not the
# limiter, with one tenant.
UNLIMITED = {"SPOOL_TURN_RATE_LIMIT": "0", "SPOOL_TENANT_MAX_RUNNING_TURNS": "0"}


# The scenarios open up to 10,000 connections (idle connections, reconnect storm): the cap of
# concurrent connections (SPOOL_HTTP_MAX_CONNECTIONS, default 1,000) is set above that.
BENCH_MAX_CONNECTIONS = "20000"


def spool_server(database_url: str, redis_url: str, **env: str) -> ServerProcess:
    """``spool serve`` on a free port of 127.0.0.1 (start it with ``await ....start()``)."""
    return ServerProcess(
        [sys.executable, "-m", "spool.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        {"SPOOL_DATABASE_URL": database_url, "SPOOL_REDIS_URL": redis_url,
         "SPOOL_ADMIN_TOKEN": ADMIN_TOKEN, "SPOOL_LOG_LEVEL": "warning",
         "SPOOL_HTTP_MAX_CONNECTIONS": BENCH_MAX_CONNECTIONS,
         "PYTHONPATH": str(REPO_ROOT), **env},
        "engine",
    )


# --- HTTP: what to stream, and a raw SSE request --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    key: str  # a member key


async def new_tenant(client: httpx.AsyncClient) -> Tenant:
    """A tenant and a member key, through ``client`` (on the server's base URL)."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await client.post("/v1/tenants", json={"name": "bench"}, headers=admin)
    response.raise_for_status()
    tenant_id = response.json()["id"]
    response = await client.post("/v1/api_keys", json={"name": "bench", "role": "member"},
                                 headers={**admin, "Spool-Tenant": tenant_id})
    response.raise_for_status()
    return Tenant(tenant_id, response.json()["key"])


async def setup_session(base_url: str) -> tuple[Tenant, str]:
    """A tenant, a member key and one session (no agent), over HTTP."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        tenant = await new_tenant(client)
        response = await client.post("/v1/sessions", json={},
                                     headers={"Authorization": f"Bearer {tenant.key}"})
        response.raise_for_status()
        return tenant, response.json()["id"]


@dataclass(frozen=True, slots=True)
class SpoolRun:
    """One run's ``spool serve`` with a session to stream, and the database it writes to."""

    server: ServerProcess
    database_url: str
    tenant: Tenant
    session_id: str


@contextlib.asynccontextmanager
async def spool_run(svc: Services, run: int) -> AsyncIterator[SpoolRun]:
    """``spool serve`` on a fresh database and Redis database ``run`` (flushed), with a tenant,
    key and session; the server is stopped on leaving (the database dropped after)."""
    redis_url = redis_db(svc.redis_url, run)
    await flush_redis(redis_url)
    async with fresh_database(svc.postgres_url) as database_url:
        server = await spool_server(database_url, redis_url).start()
        try:
            tenant, session_id = await setup_session(server.base_url)
            yield SpoolRun(server, database_url, tenant, session_id)
        finally:
            server.stop()


def sse_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    """The bytes of ``GET path`` for an event stream, on HTTP/1.1."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_sse(
    host: str, port: int, path: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Connect, send the GET, check the 200; returns the streams and the body bytes read."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(sse_request(host, port, path, headers))
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(f"SSE request failed: {head[:200]!r} {rest[:300]!r}")
    return reader, writer, rest


class HttpConnection:
    """One keep-alive HTTP/1.1 connection on a raw asyncio stream (httpx costs ~1-3 ms of CPU
    per request under concurrency: the load generator would eat the cores the servers need)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request_head: bytes, body: bytes) -> int:
        """Send ``request_head`` (ending in the last header line) and ``body``; read the whole
        response, return its status."""
        self.writer.write(request_head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"response without content-length: {head[:200]!r}")
        await self.reader.readexactly(int(length.group(1)))
        return int(head[9:12])


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


# --- sampling ------------------------------------------------------------------------------------


async def sample_rate(count: Callable[[], int], timing: Timing) -> float:
    """Operations per second of a running workload over ``timing.seconds`` after the warm-up."""
    await asyncio.sleep(timing.warmup)
    start_count, start = count(), time.perf_counter()
    await asyncio.sleep(timing.seconds)
    return (count() - start_count) / (time.perf_counter() - start)


def sample_rate_blocking(count: Callable[[], int], timing: Timing) -> float:
    """``sample_rate`` for workloads running in threads."""
    time.sleep(timing.warmup)
    start_count, start = count(), time.perf_counter()
    time.sleep(timing.seconds)
    return (count() - start_count) / (time.perf_counter() - start)


async def timed_page_read(
    fetch: Callable[[int], Awaitable[Sequence[Sequence[Any]]]], cursor: int, total: int
) -> float:
    """Seconds to read ``total`` rows page by page: ``fetch(after)`` returns the rows after the
    cursor value ``after``, which is column ``cursor`` of each row."""
    start = time.perf_counter()
    after, got = 0, 0
    while True:
        rows = await fetch(after)
        if not rows:
            break
        got += len(rows)
        after = rows[-1][cursor]
    elapsed = time.perf_counter() - start
    if got != total:
        raise RuntimeError(f"raw read got {got} rows, expected {total}")
    return elapsed


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value at ``fraction`` of ``ordered`` (sorted ascending): the one at index
    floor(fraction * n), the last for 1.0; NaN when there is none."""
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


# --- the command line ----------------------------------------------------------------------------

# The options several scripts take, spelled once.
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "seconds": ("--seconds", {"type": float, "default": 5.0,
                              "help": "measured seconds per figure"}),
    "warmup": ("--warmup", {"type": float, "default": 1.0, "help": "unmeasured seconds first"}),
    "runs": ("--runs", {"type": int, "default": 3,
                        "help": "repetitions; medians are reported"}),
}


def arguments(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0])


def add_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the shared options ``names`` (keys of OPTIONS), in that order."""
    for name in names:
        flag, spec = OPTIONS[name]
        parser.add_argument(flag, **spec)


# --- output --------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit_json(result: dict[str, Any]) -> None:
    """The one machine-readable line: on stdout, alone, starting with ``{``."""
    print(json.dumps(result, separators=(",", ":")), flush=True)


def finish(result: dict[str, Any], print_table: Callable[[dict[str, Any]], None]) -> None:
    """How every script ends: the JSON line on stdout, then its table on stderr."""
    emit_json(result)
    print_table(result)


def run_and_finish(bench: Coroutine[Any, Any, dict[str, Any]],
                   print_table: Callable[[dict[str, Any]], None]) -> None:
    """The main of the scripts that start their services themselves: run ``bench``, write out
    its result."""
    finish(asyncio.run(bench), print_table)


def install_uvloop() -> str:
    """The event loop: uvloop when installed (the one `spool serve` runs on; less client
    overhead per frame)."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def run_on_services(bench: Callable[[Services], Awaitable[dict[str, Any]]],
                    print_table: Callable[[dict[str, Any]], None]) -> None:
    """The main of the scripts that load a server with many sockets: fd limit raised, uvloop,
    ``bench`` run on the services, its result written out."""
    raise_fd_limit()
    install_uvloop()
    with services() as found:
        result = asyncio.run(bench(found))
    finish(result, print_table)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
