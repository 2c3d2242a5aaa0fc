"""Idle connections: server memory per idle SSE connection at 10,000 connections in one process.

``spool serve`` runs in its own process (fd limit raised to the hard limit). The bench process
(fd limit raised too) opens ``--connections`` raw-socket SSE connections to one session's
``GET /v1/sessions/{id}/stream`` with ``Last-Event-ID`` at the head (nothing to replay, so each
connection sits idle: subscribed, waiting for the next event or the 15 s keepalive), ``--batch``
connects in flight at a time. The server's RSS (``VmRSS`` of /proc/<pid>/status) is read after
a warm-up of ``--batch`` connections opened and closed, and again 2 s after the last connection
is up; the difference divided by N is the memory per idle connection.

Beside it, in the same run: a bare ASGI SSE server (same uvicorn, own process) that sends
``retry:`` and waits for the client to leave, measured the same way.

    .venv/bin/python bench/idle_connections.py [--connections 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from _common import (
    ServerProcess,
    Services,
    add_options,
    arguments,
    log,
    median,
    open_sse,
    raise_fd_limit,
    render_table,
    run_and_finish,
    services,
    spool_run,
    vm_rss_kib,
)
from replay import bare_server


async def open_many(
    server: ServerProcess, path: str, headers: dict[str, str], n: int, batch: int
) -> list[asyncio.StreamWriter]:
    gate = asyncio.Semaphore(batch)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        async with gate:
            _, writer, _ = await open_sse(server.host, server.port, path, headers)
            writers.append(writer)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        close_all(writers)
        raise RuntimeError(f"{len(failures)} of {n} connections failed: {failures[0]!r}")
    return writers


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


async def measure(
    server: ServerProcess, path: str, headers: dict[str, str], n: int, batch: int
) -> tuple[float, int, int, float]:
    """KiB per connection, RSS before and after (KiB), seconds to open the N."""
    close_all(await open_many(server, path, headers, batch, batch))  # warm-up
    await asyncio.sleep(1)
    before = vm_rss_kib(server.pid)
    start = time.perf_counter()
    writers = await open_many(server, path, headers, n, batch)
    opened = time.perf_counter() - start
    try:
        await asyncio.sleep(2)
        after = vm_rss_kib(server.pid)
    finally:
        close_all(writers)
    return (after - before) / n, before, after, opened


async def spool_figure(
    svc: Services, run: int, n: int, batch: int
) -> tuple[float, int, int, float]:
    async with spool_run(svc, run) as spool:
        headers = {"Authorization": f"Bearer {spool.tenant.key}", "Last-Event-ID": "1"}
        return await measure(spool.server, f"/v1/sessions/{spool.session_id}/stream", headers,
                             n, batch)


async def bare_figure(n: int, batch: int) -> tuple[float, int, int, float]:
    server = await bare_server("idle").start()
    try:
        return await measure(server, "/", {}, n, batch)
    finally:
        server.stop()


async def bench(n: int, batch: int, runs: int) -> dict[str, Any]:
    limit = raise_fd_limit()
    if limit < n + 100:
        raise SystemExit(f"the fd limit ({limit}) is too low for {n} connections")
    spool: list[tuple[float, int, int, float]] = []
    bare: list[tuple[float, int, int, float]] = []
    with services() as svc:
        for run in range(1, runs + 1):
            log(f"run {run}/{runs}")
            spool.append(await spool_figure(svc, run, n, batch))
            log(f"  spool: {spool[-1][0]:.1f} KiB/connection (RSS {spool[-1][1] / 1024:.0f} -> "
                f"{spool[-1][2] / 1024:.0f} MiB; {n} opened in {spool[-1][3]:.1f} s)")
            with contextlib.suppress(Exception):
                await asyncio.sleep(0.5)
            bare.append(await bare_figure(n, batch))
            log(f"  bare:  {bare[-1][0]:.1f} KiB/connection (RSS {bare[-1][1] / 1024:.0f} -> "
                f"{bare[-1][2] / 1024:.0f} MiB; {n} opened in {bare[-1][3]:.1f} s)")
    s_kib, b_kib = median([r[0] for r in spool]), median([r[0] for r in bare])
    return {
        "bench": "idle_connections",
        "connections": n,
        "spool_kib_per_connection": round(s_kib, 2),
        "bare_asgi_sse_kib_per_connection": round(b_kib, 2),
        "ratio_spool_vs_bare": round(s_kib / b_kib, 2) if b_kib else None,
        "spool_rss_mib_at_n": round(median([r[2] for r in spool]) / 1024, 1),
        "spool_rss_mib_before": round(median([r[1] for r in spool]) / 1024, 1),
        "spool_open_seconds": round(median([r[3] for r in spool]), 2),
        "bare_open_seconds": round(median([r[3] for r in bare]), 2),
        "samples": {
            "spool_kib_per_connection": [round(r[0], 2) for r in spool],
            "bare_asgi_sse_kib_per_connection": [round(r[0], 2) for r in bare],
        },
        "runs": runs,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ["spool SSE, idle session stream", f"{result['spool_kib_per_connection']:.1f}",
         f"{result['spool_rss_mib_before']:.0f} -> {result['spool_rss_mib_at_n']:.0f}"],
        ["bare ASGI SSE (retry:, then wait)", f"{result['bare_asgi_sse_kib_per_connection']:.1f}",
         "-"],
    ]
    log("")
    log(render_table(["server", "KiB per idle connection (median)", "RSS MiB"], rows))
    log(f"{result['connections']:,} connections in one server process; spool / bare = "
        f"{result['ratio_spool_vs_bare']}")


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="connects in flight at a time")
    add_options(parser, "runs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_and_finish(bench(args.connections, args.batch, args.runs), print_table)


if __name__ == "__main__":
    main()
