"""Append->SSE delivery latency: p50/p99/max with N subscribers on one session stream while
events are appended at R events/s.

Two figures per run, on the same machine in the same run:

* ``engine``: ``spool serve`` (uvicorn + Engine: Postgres append, Redis fan-out, dispatcher) in
  its own process; events appended with ``POST /v1/sessions/{id}/messages``; N subscribers on
  ``GET /v1/sessions/{id}/stream``.
* ``bare``: the raw limit, a bare Starlette/uvicorn SSE server (bench/_sse.py) in its own
  process: ``POST /publish`` puts the body into N in-memory queues, each stream writes its queue.

The load runs in client processes of its own: the N subscribers (raw asyncio sockets) spread over
``--client-procs`` processes (default 2), the paced appender (raw keep-alive HTTP) in this one.
Each event's text carries the monotonic time its POST was submitted; latency is the time
a subscriber read it minus that. Events appended during ``--warmup`` are not recorded; after the
``--seconds`` measured the script waits (at most ``--drain`` s) for the recorded events to arrive.
A subscriber the server cuts off (too far behind) reconnects with Last-Event-ID and is counted.

    .venv/bin/python bench/sse_latency.py [--subscribers 1000] [--rate 1000] [--seconds 5]
                                          [--warmup 1] [--drain 10] [--client-procs 2]
                                          [--runs 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import (
    ServerProcess,
    arguments,
    log,
    percentile,
)
from _sse import (
    Target,
    log_table,
    medians,
    run_facts,
    run_vs_bare,
    sse_load,
    wait_quiet,
    with_cpu,
)

TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
MAX_IN_FLIGHT = 64  # outstanding appends before the paced appender slips (server saturated)


async def measure(
    server: ServerProcess, target: Target, args: argparse.Namespace
) -> dict[str, Any]:
    async with sse_load(target, args.subscribers, args.client_procs, keep_latencies=True,
                        connections=MAX_IN_FLIGHT) as (pool, appender):
        await appender.paced(args.rate, args.warmup, MAX_IN_FLIGHT)
        sent_before, posts_before = appender.sent, len(appender.post_ns)

        async def window() -> float:
            await pool.since(time.monotonic_ns())
            return await appender.paced(args.rate, args.seconds, MAX_IN_FLIGHT)

        started = time.monotonic()
        rate, cpu = await with_cpu(server, pool, window)
        sent = appender.sent - sent_before
        expected = sent * args.subscribers
        await wait_quiet(pool, expected, args.drain)
        delivering = time.monotonic() - started  # the window plus the drain
        tally = await pool.report()
    latencies = sorted(tally.latencies_ns)
    posts = sorted(appender.post_ns[posts_before:])
    return {
        "p50_ms": percentile(latencies, 0.50) / 1e6,
        "p99_ms": percentile(latencies, 0.99) / 1e6,
        "max_ms": (latencies[-1] / 1e6) if latencies else float("nan"),
        "append_post_p50_ms": percentile(posts, 0.50) / 1e6,
        "submitted_eps": rate,
        "append_errors": appender.errors,
        "delivered_fraction": tally.frames / expected if expected else 0.0,
        "deliveries_per_s": tally.frames / delivering,
        "cut_offs": tally.cut_offs,
        **cpu.figures(),
    }


def _fmt(result: dict[str, Any]) -> str:
    return (f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"max {result['max_ms']:.1f} ms, POST p50 {result['append_post_p50_ms']:.1f} ms, "
            f"{result['submitted_eps']:,.0f} ev/s submitted, "
            f"{result['delivered_fraction']:.1%} delivered, {result['cut_offs']} cut off, "
            f"server {result['server_cores']:.2f} cores, client {result['client_cores']:.2f}")


def build_result(samples: dict[str, list[dict[str, Any]]], args: argparse.Namespace
                 ) -> dict[str, Any]:
    med = medians(samples)
    engine, bare = med["engine"], med["bare"]
    return {
        "bench": "sse_latency",
        "subscribers": args.subscribers,
        "rate_eps": args.rate,
        "engine": engine,
        "bare": bare,
        "ratio_p50_engine_vs_bare": round(engine["p50_ms"] / bare["p50_ms"], 2),
        "ratio_p99_engine_vs_bare": round(engine["p99_ms"] / bare["p99_ms"], 2),
        "targets": {
            "p50_ms_max": TARGET_P50_MS, "p50_met": engine["p50_ms"] < TARGET_P50_MS,
            "p99_ms_max": TARGET_P99_MS, "p99_met": engine["p99_ms"] < TARGET_P99_MS,
        },
        **run_facts(samples, args),
    }


def print_table(result: dict[str, Any]) -> None:
    log_table(
        result, f"{result['subscribers']} subscribers, target {result['rate_eps']:,} events/s",
        ["p50 ms", "p99 ms", "max ms", "POST p50 ms", "appended/s", "delivered", "deliveries/s",
         "cut off"],
        lambda r: [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                   f"{r['append_post_p50_ms']:.2f}", f"{r['submitted_eps']:,.0f}",
                   f"{r['delivered_fraction']:.1%}", f"{r['deliveries_per_s']:,.0f}",
                   str(int(r["cut_offs"]))],
    )
    t = result["targets"]
    log(f"engine/bare: p50 x{result['ratio_p50_engine_vs_bare']}, "
        f"p99 x{result['ratio_p99_engine_vs_bare']}")
    log(f"target p50 < {TARGET_P50_MS:g} ms: {'MET' if t['p50_met'] else 'NOT MET'}; "
        f"p99 < {TARGET_P99_MS:g} ms: {'MET' if t['p99_met'] else 'NOT MET'}")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events appended per second")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="at most this long to wait for the measured events to arrive")
    run_vs_bare(parser, measure, _fmt, build_result, print_table)


if __name__ == "__main__":
    main()
