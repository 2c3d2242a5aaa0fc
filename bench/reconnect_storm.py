"""Reconnect storm: 1,000 SSE clients of one session drop at once and resume at once.

``spool serve`` runs in its own process. The bench process connects ``--clients`` raw-socket
SSE clients to ``GET /v1/sessions/{id}/stream`` while a thread appends ``--rate`` events/s over
HTTP (``POST /v1/sessions/{id}/messages``). Once every client is live, all sockets are aborted
at the same instant and every client reconnects at once with ``Last-Event-ID`` = the last id it
got (a refused or failed reconnect is retried after 100 ms), while appends go on.

Reported, per run (medians over ``--runs``):

* ``all_live_s``: storm start -> the moment the last client received an event appended after
  the storm began (the first append sent after the abort; at ``--rate`` 20 that one is sent
  within ~50 ms);
* p50 / p99 of the per-client time to live;
* missed and duplicated events over each client's whole life (its ids must be consecutive
  across the reconnect), after the appender stops and every client has the last event.

The baseline beside it: the same clients connecting for the first time (no storm, cursor at
the head), i.e. the connect-and-first-event time of 1,000 simultaneous new clients.

    .venv/bin/python bench/reconnect_storm.py [--clients 1000] [--rate 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from _common import (
    Services,
    Tenant,
    add_options,
    arguments,
    log,
    median,
    open_sse,
    percentile,
    raise_fd_limit,
    render_table,
    run_and_finish,
    services,
    spool_run,
)


@dataclass
class Client:
    last: int
    missed: int = 0
    duplicates: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    after_storm: list[tuple[int, float]] = field(default_factory=list)
    recording: bool = False
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def got(self, event_id: int, now: float) -> None:
        if event_id <= self.last:
            self.duplicates += 1
            return
        if event_id > self.last + 1:
            self.missed += event_id - self.last - 1
        self.last = event_id
        if self.recording:
            self.after_storm.append((event_id, now))


async def follow(client: Client, host: str, port: int, path: str, key: str) -> None:
    """Read frames for ever; on a refused/failed connect retry after 100 ms."""
    while True:
        try:
            reader, writer, body = await open_sse(
                host, port, path,
                {"Authorization": f"Bearer {key}", "Last-Event-ID": str(client.last)})
            break
        except (OSError, RuntimeError) as exc:
            client.retries += 1
            if len(client.errors) < 3:
                client.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            await asyncio.sleep(0.1)
    client.writer = writer
    client.connected.set()
    buffer = body
    while True:
        pieces = buffer.split(b"\n\n")
        buffer = pieces.pop()
        now = time.perf_counter()
        for piece in pieces:
            at = piece.find(b"id: ")
            if at >= 0:
                client.got(int(piece[at + 4:piece.index(b"\n", at)]), now)
        chunk = await reader.read(65536)
        if not chunk:
            return
        buffer += chunk


class Appender(threading.Thread):
    """POSTs one message every 1/rate s; remembers (sent at, seq) of each."""

    def __init__(self, base_url: str, key: str, session_id: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.base_url, self.key, self.session_id, self.rate = base_url, key, session_id, rate
        self.sent: list[tuple[float, int]] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=30,
                              headers={"Authorization": f"Bearer {self.key}"}) as http:
                next_at = time.perf_counter()
                n = 0
                while not self.stop_flag.is_set():
                    sent_at = time.perf_counter()
                    response = http.post(f"/v1/sessions/{self.session_id}/messages",
                                         json={"content": f"live {n}"})
                    response.raise_for_status()
                    self.sent.append((sent_at, response.json()["event"]["seq"]))
                    n += 1
                    next_at += 1 / self.rate
                    time.sleep(max(0.0, next_at - time.perf_counter()))
        except BaseException as exc:  # reported by the run
            self.error = exc

    def first_seq_sent_after(self, moment: float) -> int | None:
        for sent_at, seq in self.sent:
            if sent_at >= moment:
                return seq
        return None


async def wait_for(predicate: Any, limit: float, what: str) -> None:
    deadline = time.perf_counter() + limit
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def live_times(clients: list[Client], threshold: int, start: float) -> list[float]:
    """Each client's time to live, sorted (for the percentiles)."""
    times = []
    for client in clients:
        hit = next((t for event_id, t in client.after_storm if event_id >= threshold), None)
        if hit is not None:
            times.append(hit - start)
    return sorted(times)


@dataclass
class RunResult:
    all_live_s: float
    p50_s: float
    p99_s: float
    first_all_live_s: float
    first_p50_s: float
    first_p99_s: float
    missed: int
    duplicates: int
    retries: int
    appended: int


async def one_run(svc: Services, run: int, clients_n: int, rate: float) -> RunResult:
    async with spool_run(svc, run) as spool:
        server, clients = spool.server, list[Client]()
        try:
            return await _storm(server.host, server.port, server.base_url, spool.tenant,
                                spool.session_id, clients_n, rate, clients)
        finally:
            for client in clients:
                if client.task is not None:
                    client.task.cancel()
                if client.writer is not None:
                    client.writer.transport.abort()


async def _storm(
    host: str, port: int, base_url: str, tenant: Tenant, session_id: str, clients_n: int,
    rate: float, clients: list[Client],
) -> RunResult:
    path = f"/v1/sessions/{session_id}/stream"
    clients.extend(Client(last=1) for _ in range(clients_n))  # seq 1: session_created
    for client in clients:
        client.recording = True  # first connect measured like a storm: the raw figure
    appender = Appender(base_url, tenant.key, session_id, rate)
    first_start = time.perf_counter()
    for client in clients:
        client.task = asyncio.create_task(follow(client, host, port, path, tenant.key))
    appender.start()
    try:
        await wait_for(lambda: all(c.last > 1 for c in clients), 60, "every client's first event")
        first_threshold = appender.first_seq_sent_after(first_start) or 2
        first = live_times(clients, first_threshold, first_start)
        log(f"  {clients_n} new clients all live in {max(first):.2f} s "
            f"(p50 {percentile(first, 0.5) * 1000:.0f} ms)")
        for client in clients:
            client.recording, client.after_storm = False, []
        await asyncio.sleep(2)

        # The storm: every socket aborted at once, every client reconnecting at once.
        storm = time.perf_counter()
        for client in clients:
            client.recording = True
            assert client.task is not None and client.writer is not None
            client.task.cancel()
            client.writer.transport.abort()
            client.connected.clear()
        await asyncio.gather(*(c.task for c in clients if c.task), return_exceptions=True)
        for client in clients:
            client.task = asyncio.create_task(follow(client, host, port, path, tenant.key))

        def all_live() -> bool:
            threshold = appender.first_seq_sent_after(storm)
            return threshold is not None and all(c.last >= threshold for c in clients)

        await wait_for(all_live, 60, "every client live after the storm")
        threshold = appender.first_seq_sent_after(storm)
        assert threshold is not None
        times = live_times(clients, threshold, storm)
        await asyncio.sleep(1)
    finally:
        appender.stop_flag.set()
        await asyncio.to_thread(appender.join)
    if appender.error is not None:
        raise RuntimeError(f"appender failed: {appender.error!r}")
    final = appender.sent[-1][1]
    await wait_for(lambda: all(c.last >= final for c in clients), 30, "the last event everywhere")
    await asyncio.sleep(0.2)  # any duplicate after the last event would show now
    missed = sum(c.missed for c in clients)
    duplicates = sum(c.duplicates for c in clients)
    retries = sum(c.retries for c in clients)
    errors = [e for c in clients for e in c.errors][:3]
    log(f"  storm: all {clients_n} live again in {max(times):.2f} s (p50 "
        f"{percentile(times, 0.5) * 1000:.0f} ms, p99 {percentile(times, 0.99) * 1000:.0f} ms); "
        f"missed {missed}, duplicates {duplicates}, reconnect retries {retries} {errors}")
    return RunResult(
        max(times), percentile(times, 0.5), percentile(times, 0.99),
        max(first), percentile(first, 0.5), percentile(first, 0.99),
        missed, duplicates, retries, len(appender.sent),
    )


async def bench(clients: int, rate: float, runs: int) -> dict[str, Any]:
    raise_fd_limit()
    with services() as svc:
        results = []
        for run in range(1, runs + 1):
            log(f"run {run}/{runs}")
            results.append(await one_run(svc, run, clients, rate))

    def med(name: str, scale: float = 1.0) -> float:
        return round(median([getattr(r, name) * scale for r in results]), 3)

    missed = sum(r.missed for r in results)
    duplicates = sum(r.duplicates for r in results)
    return {
        "bench": "reconnect_storm",
        "clients": clients,
        "append_rate_eps": rate,
        "all_live_s": med("all_live_s"),
        "ttl_p50_ms": med("p50_s", 1000),
        "ttl_p99_ms": med("p99_s", 1000),
        "first_connect_all_live_s": med("first_all_live_s"),
        "first_connect_p50_ms": med("first_p50_s", 1000),
        "first_connect_p99_ms": med("first_p99_s", 1000),
        "missed_events": missed,
        "duplicate_events": duplicates,
        "no_loss_no_duplicate": missed == 0 and duplicates == 0,
        "reconnect_retries": sum(r.retries for r in results),
        "samples": {
            "all_live_s": [round(r.all_live_s, 3) for r in results],
            "ttl_p99_ms": [round(r.p99_s * 1000, 1) for r in results],
            "appended": [r.appended for r in results],
        },
        "runs": runs,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ["storm: all drop, all resume with Last-Event-ID", f"{result['all_live_s']:.2f}",
         f"{result['ttl_p50_ms']:.0f}", f"{result['ttl_p99_ms']:.0f}"],
        ["baseline: the same clients connecting the first time",
         f"{result['first_connect_all_live_s']:.2f}",
         f"{result['first_connect_p50_ms']:.0f}", f"{result['first_connect_p99_ms']:.0f}"],
    ]
    log("")
    log(render_table(["scenario", "all live (s)", "p50 (ms)", "p99 (ms)"], rows))
    log(f"{result['clients']:,} clients, {result['append_rate_eps']:g} events/s appended; "
        f"missed {result['missed_events']}, duplicates {result['duplicate_events']} -> "
        f"{'OK' if result['no_loss_no_duplicate'] else 'FAILED'}; "
        f"reconnect retries {result['reconnect_retries']}")


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s appended")
    add_options(parser, "runs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_and_finish(bench(args.clients, args.rate, args.runs), print_table)


if __name__ == "__main__":
    main()
