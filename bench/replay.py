"""Replay rate: events/s one SSE client receives replaying a 100k-event session from cursor 0.

Three figures per run, on the same services and the same machine:

* ``sse``: ``spool serve`` in its own process; the bench process connects one client to
  ``GET /v1/sessions/{id}/stream`` (no cursor) and times connect -> the 100,000th frame.
* ``raw_pg``: the raw read limit. One asyncpg connection reading the same rows in pages of
  1000 (``SELECT ... WHERE stream_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000``).
* ``bare_sse``: the raw SSE limit. A bare ASGI app (same uvicorn, own process) streaming 100k
  pre-encoded frames of the same size (one ASGI body message per frame, as Starlette's
  StreamingResponse does) to the same client.
* ``bare_sse_1000_per_message``: the same frames, 1000 per ASGI message (what a server that
  writes a replayed page as one chunk could reach).

The session's events are loaded through ``engine.log.store.EventStore.append`` (1000 per call), not
over HTTP. The client reads the socket raw and counts frames by their blank-line terminators
(it checks the last id it got), so it costs far less than the servers it measures.

Services: embedded Postgres + Valkey in a temporary dir unless SPOOL_DATABASE_URL /
SPOOL_REDIS_URL are set. Each run uses a fresh database and Redis database number ``run``
(flushed first). After loading, ``ANALYZE events`` runs and the clock starts only once the server
process is idle (its dispatcher and relay have worked through the load).

    .venv/bin/python bench/replay.py [--events 100000] [--runs 3]

idle_connections.py uses its bare ASGI server (mode ``idle``) too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from _common import (
    REPO_ROOT,
    ServerProcess,
    Services,
    add_options,
    arguments,
    cpu_seconds,
    install_uvloop,
    log,
    median,
    open_sse,
    raise_fd_limit,
    render_table,
    run_and_finish,
    serve_bare,
    server_facts,
    services,
    spool_run,
    timed_page_read,
)

from engine.events import NewEvent
from engine.infra.db import create_pool, init_connection
from engine.log.store import EventStore

TARGET_EPS = 100_000
APPEND_BATCH = 1000
# A realistic small event: an assistant message of ~120 characters.
DATA = msgspec.json.encode(
    {"content": [{"type": "text", "text": "The quick brown fox jumps over the lazy dog. " * 3}]}
)
_COLUMNS = "id, stream_id, stream_type, seq, position, type, data, meta, created_at"


# --- the server under test, in its own process ---------------------------------------------------


def bare_server(mode: str, frame_file: str = "", count: int = 0) -> ServerProcess:
    return ServerProcess(
        [sys.executable, str(Path(__file__).resolve()), "--bare-server", mode,
         "--frame-file", frame_file, "--events", str(count)],
        {"PYTHONPATH": str(REPO_ROOT)}, "bare",
    )


async def wait_idle(pid: int, *, limit: float = 60.0) -> float:
    """Wait (at least 1 s, at most ``limit``) until the process uses < 5% of a CPU over 0.5 s;
    returns the CPU seconds it spent meanwhile."""
    start = cpu_seconds(pid)
    await asyncio.sleep(1)
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - before < 0.025:
            break
    return cpu_seconds(pid) - start


# --- the bare ASGI SSE server (run as a child: ``replay.py --bare-server MODE``) -----------------


def run_bare_server(mode: str, frame_file: str, count: int) -> None:
    """``replay``: stream ``count`` pre-encoded frames built from the template in ``frame_file``
    (``%d`` for the id), one ASGI message each; ``replay-pages``: the same, 1000 frames per
    message. ``idle``: send ``retry:`` and wait for the
    client to leave (a keepalive comment every 15 s, as the real server)."""

    raise_fd_limit()
    frames: list[bytes] = []
    if mode in ("replay", "replay-pages"):
        template = Path(frame_file).read_bytes()
        frames = [template % (i + 1) for i in range(count)]
    if mode == "replay-pages":  # the frames of a page of 1000 as one message
        frames = [b"".join(frames[i:i + 1000]) for i in range(0, count, 1000)]
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        if mode in ("replay", "replay-pages"):
            for frame in frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        else:
            while True:
                try:
                    async with asyncio.timeout(15):
                        message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                except TimeoutError:
                    await send({"type": "http.response.body", "body": b": keepalive\n\n",
                                "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def serve() -> None:
        # Stopped right after the clients left: streams whose disconnect it has not seen yet
        # would hold a graceful shutdown to the 30 s the bench waits before killing it.
        await serve_bare(app, "bare", lifespan="off", timeout_graceful_shutdown=1)

    install_uvloop()  # the event loop `spool serve` runs on, for a like-for-like limit
    asyncio.run(serve())


# --- a raw SSE client ----------------------------------------------------------------------------


async def count_frames(
    host: str, port: int, path: str, headers: dict[str, str], want: int
) -> tuple[float, int, bytes]:
    """Seconds from connect to the ``want``-th frame after ``retry:``, body bytes read, and the
    last bytes read (to check the last id). Frames contain no blank line and a chunk holds whole
    frames, so counting ``\\n\\n`` counts frames."""
    start = time.perf_counter()
    reader, writer, body = await open_sse(host, port, path, headers)
    seen, total, tail = body.count(b"\n\n"), len(body), body
    try:
        while seen < want + 1:  # + the retry: frame
            chunk = await reader.read(1 << 20)
            if not chunk:
                raise ConnectionError(f"stream ended after {seen - 1} frames")
            seen += chunk.count(b"\n\n") + (tail[-1:] == b"\n" and chunk[:1] == b"\n")
            total += len(chunk)
            tail = (tail + chunk)[-4096:]
        return time.perf_counter() - start, total, tail
    finally:
        writer.close()


def check_last_id(tail: bytes, last: int) -> None:
    if b"id: %d\n" % last not in tail:
        raise RuntimeError(f"the last frame read is not id {last}: ...{tail[-300:]!r}")


# --- one run -------------------------------------------------------------------------------------


async def load_events(database_url: str, tenant_id: str, session_id: str, total: int) -> float:
    """Append events until the session has ``total`` (its session_created is seq 1)."""
    pool = await create_pool(database_url, size=2)
    store = EventStore(pool, batch_max=APPEND_BATCH)
    store.start()
    start = time.perf_counter()
    try:
        remaining = total - 1
        while remaining > 0:
            n = min(APPEND_BATCH, remaining)
            await store.append(session_id, [NewEvent(type="assistant_message", data=DATA)] * n,
                               tenant_id=tenant_id, stream_type="session")
            remaining -= n
        return total / (time.perf_counter() - start)
    finally:
        await store.stop()
        await pool.close()


async def frame_template(
    database_url: str, tenant_id: str, session_id: str, total: int
) -> bytes:
    """A frame as the server writes it for a mid-session event, with ``%d`` for the id (taken
    from the middle of the session)."""
    from engine.log.live import LiveEvent, frame

    pool = await create_pool(database_url, size=2)
    try:
        store = EventStore(pool)
        [event] = await store.read_stream(session_id, tenant_id=tenant_id, after=total // 2,
                                           limit=1)
    finally:
        await pool.close()
    return frame(123_456_789, LiveEvent.from_event(tenant_id, event)).replace(b"%", b"%%").replace(
        b"id: 123456789", b"id: %d")


async def analyze(database_url: str, tenant_id: str, session_id: str) -> None:
    """ANALYZE the freshly loaded table, as autovacuum soon would: with the statistics of an
    empty table the planner may read a page of the stream through ``events_tenant_position`` and
    sort, i.e. scan the whole session for every page of 1000 (seen: 5x slower replay)."""
    conn = await asyncpg.connect(database_url)
    try:
        explain = f"EXPLAIN SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND tenant_id = $2" \
            " AND seq > $3 ORDER BY seq LIMIT 1000"
        before = await _plan(conn, explain, session_id, tenant_id)
        await conn.execute("ANALYZE events")
        after = await _plan(conn, explain, session_id, tenant_id)
        log(f"  plan of a page before ANALYZE: {before}; after: {after}")
    finally:
        await conn.close()


async def _plan(conn: asyncpg.Connection, explain: str, session_id: str, tenant_id: str) -> str:
    rows = await conn.fetch(explain, session_id, tenant_id, 0)
    nodes = [row[0].strip().removeprefix("->").strip().split("  (")[0] for row in rows]
    details = ("Sort Key", "Index Cond", "Filter", "Recheck")
    return " / ".join(node for node in nodes if node and not node.startswith(details))


async def raw_pg_rate(database_url: str, tenant_id: str, session_id: str, total: int) -> float:
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    query = (f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND tenant_id = $2"
             " AND seq > $3 ORDER BY seq LIMIT 1000")
    try:
        elapsed = await timed_page_read(
            lambda after: conn.fetch(query, session_id, tenant_id, after), 3, total)
    finally:
        await conn.close()
    return total / elapsed


@dataclass
class RunResult:
    sse_eps: float
    raw_pg_eps: float
    bare_eps: float
    load_eps: float
    frame_bytes: float
    bare_pages_eps: float


async def one_run(svc: Services, run: int, total: int) -> RunResult:
    async with spool_run(svc, run) as spool:
        server, tenant, session_id = spool.server, spool.tenant, spool.session_id
        database_url = spool.database_url
        load_eps = await load_events(database_url, tenant.tenant_id, session_id, total)
        log(f"  loaded {total:,} events ({load_eps:,.0f} events/s)")
        await analyze(database_url, tenant.tenant_id, session_id)
        # The server's dispatcher and relay see the load (it was committed by this process)
        # and work through it: start the clock only once the server is idle.
        busy = await wait_idle(server.pid)
        log(f"  server idle after the load ({busy:.1f} s of CPU spent on it)")
        path = f"/v1/sessions/{session_id}/stream"
        elapsed, nbytes, tail = await count_frames(
            server.host, server.port, path, {"Authorization": f"Bearer {tenant.key}"}, total)
        check_last_id(tail, total)
        server.stop()  # idle from here: the raw reads do not compete with it
        sse_eps = total / elapsed
        log(f"  sse replay: {sse_eps:,.0f} events/s ({elapsed:.2f} s, "
            f"{nbytes / total:.0f} B/frame)")
        raw_eps = await raw_pg_rate(database_url, tenant.tenant_id, session_id, total)
        log(f"  raw asyncpg pages of 1000: {raw_eps:,.0f} events/s")
        template = await frame_template(database_url, tenant.tenant_id, session_id, total)
    with tempfile.NamedTemporaryFile(suffix=".frame") as handle:
        handle.write(template)
        handle.flush()
        b_elapsed, b_bytes = await bare_replay("replay", handle.name, total)
        bare_eps = total / b_elapsed
        log(f"  bare ASGI SSE: {bare_eps:,.0f} events/s ({b_bytes / total:.0f} B/frame)")
        p_elapsed, _ = await bare_replay("replay-pages", handle.name, total)
    pages_eps = total / p_elapsed
    log(f"  bare ASGI SSE, 1000 frames per message: {pages_eps:,.0f} events/s")
    return RunResult(sse_eps, raw_eps, bare_eps, load_eps, nbytes / total, pages_eps)


async def bare_replay(mode: str, frame_file: str, total: int) -> tuple[float, int]:
    """Seconds and bytes to read the ``total`` frames the bare server sends in ``mode``."""
    bare = await bare_server(mode, frame_file, total).start()
    try:
        elapsed, nbytes, tail = await count_frames(bare.host, bare.port, "/", {}, total)
        check_last_id(tail, total)
    finally:
        bare.stop()
    return elapsed, nbytes


async def bench(total: int, runs: int) -> dict[str, Any]:
    with services() as svc:
        facts = await server_facts(svc.postgres_url)
        results = []
        for run in range(1, runs + 1):
            log(f"run {run}/{runs}")
            results.append(await one_run(svc, run, total))
    sse = median([r.sse_eps for r in results])
    raw = median([r.raw_pg_eps for r in results])
    bare = median([r.bare_eps for r in results])
    return {
        "bench": "replay",
        "events": total,
        "sse_eps": round(sse, 1),
        "raw_pg_pages_eps": round(raw, 1),
        "bare_asgi_sse_eps": round(bare, 1),
        "bare_asgi_sse_1000_per_message_eps": round(
            median([r.bare_pages_eps for r in results]), 1),
        "ratio_sse_vs_raw_pg": round(sse / raw, 3),
        "ratio_sse_vs_bare_sse": round(sse / bare, 3),
        "target_eps": TARGET_EPS,
        "target_met": sse >= TARGET_EPS,
        "frame_bytes": round(median([r.frame_bytes for r in results]), 1),
        "load_eps": round(median([r.load_eps for r in results]), 1),
        "samples": {
            "sse_eps": [round(r.sse_eps, 1) for r in results],
            "raw_pg_pages_eps": [round(r.raw_pg_eps, 1) for r in results],
            "bare_asgi_sse_eps": [round(r.bare_eps, 1) for r in results],
            "bare_asgi_sse_1000_per_message_eps": [round(r.bare_pages_eps, 1) for r in results],
        },
        "runs": runs,
        "cpus": os.cpu_count(),
        "postgres": {k: facts[k] for k in ("server_version", "shared_buffers")},
    }


def print_table(result: dict[str, Any]) -> None:
    sse = result["sse_eps"]
    rows = [
        ["spool SSE replay from cursor 0 (own process)", f"{sse:,.0f}", "1.00"],
        ["raw asyncpg, pages of 1000 (no HTTP)", f"{result['raw_pg_pages_eps']:,.0f}",
         f"{result['raw_pg_pages_eps'] / sse:.2f}"],
        ["bare ASGI SSE, pre-encoded frames (no DB)", f"{result['bare_asgi_sse_eps']:,.0f}",
         f"{result['bare_asgi_sse_eps'] / sse:.2f}"],
        ["bare ASGI SSE, 1000 frames per message",
         f"{result['bare_asgi_sse_1000_per_message_eps']:,.0f}",
         f"{result['bare_asgi_sse_1000_per_message_eps'] / sse:.2f}"],
    ]
    log("")
    log(render_table(["scenario", "events/s (median)", "x spool"], rows))
    log(f"{result['events']:,} events of {result['frame_bytes']:.0f} B per frame; "
        f"target >= {TARGET_EPS:,} events/s: {'MET' if result['target_met'] else 'NOT MET'} "
        f"({sse / TARGET_EPS:.0%} of target, {result['ratio_sse_vs_bare_sse']:.0%} of bare SSE)")


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events in the session")
    add_options(parser, "runs")
    parser.add_argument("--bare-server", help=argparse.SUPPRESS)
    parser.add_argument("--frame-file", default="", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.bare_server:
        run_bare_server(args.bare_server, args.frame_file, args.events)
        return
    run_and_finish(bench(args.events, args.runs), print_table)


if __name__ == "__main__":
    main()
