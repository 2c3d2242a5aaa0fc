"""SSE fan-out throughput: events delivered per second, summed over N subscribers (default 100)
of one session stream, while events are appended as fast as the server takes them.

Two figures per run, on the same machine in the same run:

* ``engine``: ``spool serve`` (uvicorn + Engine: Postgres append, Redis fan-out, dispatcher) in
  its own process; ``--appenders`` closed loops of ``POST /v1/sessions/{id}/messages``; N
  subscribers on ``GET /v1/sessions/{id}/stream``.
* ``bare``: the raw limit, a bare Starlette/uvicorn SSE server (bench/_sse.py) in its own
  process: ``POST /publish`` puts the body into N in-memory queues, each stream writes its queue.

The load runs in client processes of its own: the subscribers (raw asyncio sockets) spread over
``--client-procs`` processes (default 2), the appenders (raw keep-alive HTTP) in this one.
Delivered/s counts every event frame any subscriber read during the ``--seconds`` measured
(after ``--warmup``). A subscriber the server cuts off (too far behind) reconnects with
Last-Event-ID and is counted.

    .venv/bin/python bench/sse_fanout.py [--subscribers 100] [--appenders 16] [--seconds 5]
                                         [--warmup 1] [--client-procs 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from _common import (
    ServerProcess,
    arguments,
    log,
)
from _sse import (
    Target,
    log_table,
    medians,
    run_facts,
    run_vs_bare,
    sse_load,
    with_cpu,
)

TARGET_VS_BARE = 0.7  # issue 13: fan-out at least 0.7 of a bare ASGI SSE server


async def measure(server: ServerProcess, target: Target, args: argparse.Namespace
                  ) -> dict[str, float]:
    async with sse_load(target, args.subscribers, args.client_procs, keep_latencies=False,
                        connections=args.appenders) as (pool, appender):
        stop = asyncio.Event()
        load = asyncio.create_task(appender.flat_out(args.appenders, stop))
        try:
            await asyncio.sleep(args.warmup)
            (_, frames_before), sent_before = await pool.frames(), appender.sent

            async def window() -> None:
                await asyncio.sleep(args.seconds)

            _, cpu = await with_cpu(server, pool, window)
            wall = cpu.wall
            (_, frames_after), sent_after = await pool.frames(), appender.sent
            delivered = (frames_after - frames_before) / wall
            appended = (sent_after - sent_before) / wall
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await load
            tally = await pool.report()
    return {
        "delivered_eps": delivered,
        "appended_eps": appended,
        "delivered_per_append": delivered / appended if appended else 0.0,
        "append_errors": float(appender.errors),
        "cut_offs": float(tally.cut_offs),
        **cpu.figures(),
    }


def _fmt(result: dict[str, float]) -> str:
    return (f"{result['delivered_eps']:,.0f} delivered/s, {result['appended_eps']:,.0f} "
            f"appended/s, {int(result['cut_offs'])} cut off, server "
            f"{result['server_cores']:.2f} cores, client {result['client_cores']:.2f}")


def build_result(samples: dict[str, list[dict[str, float]]], args: argparse.Namespace
                 ) -> dict[str, Any]:
    med = medians(samples)
    ratio = med["engine"]["delivered_eps"] / med["bare"]["delivered_eps"]
    per_run = [e["delivered_eps"] / b["delivered_eps"]
               for e, b in zip(samples["engine"], samples["bare"], strict=True)]
    return {
        "bench": "sse_fanout",
        "subscribers": args.subscribers,
        "appenders": args.appenders,
        "engine": med["engine"],
        "bare": med["bare"],
        "ratio_engine_vs_bare": round(ratio, 3),
        "ratio_engine_vs_bare_per_run": [round(r, 3) for r in per_run],
        "targets": {"engine_vs_bare_min": TARGET_VS_BARE,
                    "engine_vs_bare_met": ratio >= TARGET_VS_BARE},
        **run_facts(samples, args),
    }


def print_table(result: dict[str, Any]) -> None:
    log_table(
        result, f"{result['subscribers']} subscribers, {result['appenders']} closed-loop appenders",
        ["delivered/s", "appended/s", "per append", "cut off"],
        lambda r: [f"{r['delivered_eps']:,.0f}", f"{r['appended_eps']:,.0f}",
                   f"{r['delivered_per_append']:.1f}", str(int(r["cut_offs"]))],
    )
    log(f"target engine >= {TARGET_VS_BARE:.0%} of bare: {result['ratio_engine_vs_bare']:.1%} "
        f"(per run {', '.join(f'{r:.0%}' for r in result['ratio_engine_vs_bare_per_run'])}) -> "
        f"{'MET' if result['targets']['engine_vs_bare_met'] else 'NOT MET'}")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--appenders", type=int, default=16,
                        help="concurrent closed-loop appenders (HTTP connections)")
    run_vs_bare(parser, measure, _fmt, build_result, print_table)


if __name__ == "__main__":
    main()
