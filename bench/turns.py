"""Turns end to end: turns/s, time to first delta and turn latency with the scripted adapter
(a fixed number of tokens per reply) for 1, 10 and 100 concurrent sessions, beside the
append-only figure measured in the same run on the same server, and the overhead the runtime
adds per turn.

* CPU per event (``cpu_ms_per_event``): the CPU time over the measured window of the server's
  process tree, the worker processes, every Postgres process and Valkey (embedded services
  only), divided by the events appended in the window (the log head's move). The clients'
  processes are not counted.

* ``spool serve`` (``python -m spool.cli serve --port 0``) runs in its own process on a fresh
  database, with ``--workers`` sessions run at once by its in-process worker (SPOOL_WORKERS);
  ``--worker-procs`` adds ``spool worker --concurrency K`` processes on the same Postgres/Redis.
* The agent is ``{"adapter": "scripted"}`` without a script: it echoes, "You said: <message>",
  one ``message_delta`` per word. The message has ``--tokens`` - 2 words, so every reply is
  exactly ``--tokens`` deltas and every turn appends ``--tokens`` + 6 events (user_message,
  turn_started, message_start, the deltas, message_stop, spend_recorded, session_done).
* turns: C closed-loop clients, each on its own new session with the agent: it follows the
  session's SSE stream and POSTs a message, waits for that turn's ``session_done`` on the
  stream, then POSTs the next. Time to first delta = POST sent -> first ``message_delta`` frame
  read; turn latency = POST sent -> ``session_done`` frame read.
* append (the raw figure beside it): C closed-loop clients, each on its own new session without
  an agent (it only records: no turn runs), each following its stream like the turn clients and
  POSTing the same message as soon as the previous POST returned. Events/s.

The clients run in ``--client-procs`` processes of their own (raw asyncio sockets). Counted over
``--seconds`` after ``--warmup``; ``--runs`` repetitions, medians reported.

    .venv/bin/python bench/turns.py [--tokens 20] [--concurrency 1,10,100] [--seconds 5]
        [--warmup 1] [--runs 3] [--workers 8] [--worker-procs 0] [--worker-concurrency 8]
        [--client-procs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _common import (
    UNLIMITED,
    HttpConnection,
    ServerProcess,
    ServiceCpu,
    add_options,
    arguments,
    cpu_seconds,
    fresh_database,
    install_uvloop,
    log,
    median,
    new_tenant,
    percentile,
    render_table,
    run_on_services,
    spool_server,
    sse_request,
    start_children,
    tree_cpu_seconds,
)

SCRIPT = str(Path(__file__).resolve())
EVENT = re.compile(rb"\nevent: ([a-z_]+)\n")
# user_message, turn_started, message_start, message_stop, spend_recorded, session_done
EXTRA_EVENTS = 6
TURN_TIMEOUT = 60.0
SAMPLE_KEYS = ("rate", "cpu_ms_per_event", "ttfd_p50_ms", "ttfd_p99_ms", "latency_p50_ms",
               "latency_p99_ms", "turns_per_session", "server_cores", "other_cores")


# --- the client processes (python bench/turns.py client) -----------------------------------------


class _Stream(asyncio.Protocol):
    """A session's SSE stream, read in the transport's callback: per frame only its type
    matters (a regex over each read). Records, for the turn in progress, when its first
    ``message_delta`` and its ``session_done`` were read, and how many events it had."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.head = b""
        self.in_body = False
        self.pending = b""
        self.transport: asyncio.BaseTransport | None = None
        self.frames = 0
        self.done: asyncio.Future[int] | None = None  # the turn in progress: session_done's time
        self.first_delta_ns = 0
        self.deltas = 0
        self.events = 0
        self.failed = 0  # session_done frames that were not "completed"
        self.closing = False  # closed by us: nobody waits any more

    def begin_turn(self) -> asyncio.Future[int]:
        self.done = asyncio.get_running_loop().create_future()
        self.first_delta_ns = 0
        self.deltas = self.events = 0
        return self.done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        for future in (self.ready, self.closed, self.done):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("the stream closed"))

    def data_received(self, chunk: bytes) -> None:
        now = time.monotonic_ns()
        if not self.in_body:
            self.head += chunk
            split = self.head.find(b"\r\n\r\n")
            if split < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(f"stream refused: {self.head[:200]!r}"))
                return
            self.in_body = True
            chunk = self.head[split + 4:]
            self.ready.set_result(None)
        data = self.pending + chunk if self.pending else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self.pending = data
            return
        complete, self.pending = data[: end + 2], data[end + 2:]
        types = EVENT.findall(complete)
        self.frames += len(types)
        for kind in types:
            self.events += 1
            if kind == b"message_delta":
                self.deltas += 1
                if not self.first_delta_ns:
                    self.first_delta_ns = now
            elif kind == b"session_done":
                if b'"completed"' not in complete:
                    self.failed += 1
                if self.done is not None and not self.done.done():
                    self.done.set_result(now)


class _Client:
    """One session: its stream and a keep-alive connection to POST messages on."""

    def __init__(self, spec: dict[str, Any], session_id: str) -> None:
        self.spec = spec
        self.session_id = session_id
        self.stream = _Stream()
        self.http: HttpConnection | None = None
        self.transport: asyncio.BaseTransport | None = None
        host = f"{spec['host']}:{spec['port']}"
        self.post_head = (f"POST /v1/sessions/{session_id}/messages HTTP/1.1\r\nHost: {host}\r\n"
                          f"Authorization: Bearer {spec['key']}\r\n"
                          "Content-Type: application/json\r\n").encode()
        self.body = json.dumps({"content": spec["message"]}).encode()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_connection(
            lambda: self.stream, self.spec["host"], self.spec["port"])
        self.transport.write(sse_request(
            self.spec["host"], self.spec["port"], f"/v1/sessions/{self.session_id}/stream",
            {"Authorization": f"Bearer {self.spec['key']}"}))
        await self.stream.ready
        self.http = HttpConnection(
            *await asyncio.open_connection(self.spec["host"], self.spec["port"]))

    async def turns(self, start_ns: int, end_ns: int, out: dict[str, Any]) -> None:
        """Closed loop of turns until ``end_ns``; the turn in flight at ``end_ns`` finishes."""
        assert self.http is not None
        index = 0
        while time.monotonic_ns() < end_ns:
            done = self.stream.begin_turn()
            sent = time.monotonic_ns()
            status = await self.http.post(self.post_head, self.body)
            if status != 202:
                out["errors"] += 1
                await asyncio.sleep(0.01)
                continue
            async with asyncio.timeout(TURN_TIMEOUT):
                finished = await done
            index += 1
            if start_ns <= finished < end_ns:
                out["count"] += 1
                out["per_second"][(finished - start_ns) // 1_000_000_000] += 1
            if sent >= start_ns:
                first = self.stream.first_delta_ns
                out["ttfd_ns"].append(first - sent if first else -1)
                out["latency_ns"].append(finished - sent)
                out["turn_index"].append(index)
                out["deltas"].append(self.stream.deltas)
                out["events"].append(self.stream.events)

    async def appends(self, start_ns: int, end_ns: int, out: dict[str, Any]) -> None:
        """Closed loop of plain appends until ``end_ns``."""
        assert self.http is not None
        while True:
            sent = time.monotonic_ns()
            if sent >= end_ns:
                return
            status = await self.http.post(self.post_head, self.body)
            returned = time.monotonic_ns()
            if status != 202:
                out["errors"] += 1
                continue
            if start_ns <= returned < end_ns:
                out["count"] += 1
            if sent >= start_ns:
                out["latency_ns"].append(returned - sent)

    def close(self) -> None:
        self.stream.closing = True
        if self.transport is not None:
            self.transport.close()
        if self.http is not None:
            self.http.writer.close()


async def _run_clients(spec: dict[str, Any]) -> None:
    """Connect every session's client, say ``ready``; on ``go START END`` (monotonic ns) run the
    closed loops, then print one JSON line with what was measured."""
    clients = [_Client(spec, session_id) for session_id in spec["sessions"]]
    for first in range(0, len(clients), 50):
        await asyncio.gather(*(client.connect() for client in clients[first:first + 50]))
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    print("ready", flush=True)
    _, start, end = (await commands.readline()).split()
    start_ns, end_ns = int(start), int(end)
    seconds = -(-(end_ns - start_ns) // 1_000_000_000)
    out: dict[str, Any] = {"count": 0, "errors": 0, "ttfd_ns": [], "latency_ns": [],
                           "turn_index": [], "deltas": [], "events": [],
                           "per_second": [0] * seconds}
    loop_of = _Client.turns if spec["mode"] == "turns" else _Client.appends
    try:
        await asyncio.gather(*(loop_of(client, start_ns, end_ns, out) for client in clients))
    finally:
        out["failed"] = sum(client.stream.failed for client in clients)
        out["frames"] = sum(client.stream.frames for client in clients)
        for client in clients:
            client.close()
    print(json.dumps(out, separators=(",", ":")), flush=True)


class ClientPool:
    """The sessions' clients spread over ``processes`` processes of their own."""

    def __init__(self, spec: dict[str, Any], processes: int) -> None:
        sessions = spec["sessions"]
        self.specs = [{**spec, "sessions": sessions[i::processes]} for i in range(processes)]
        self.specs = [s for s in self.specs if s["sessions"]]
        self.children: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        await start_children(self.children,
                             [[SCRIPT, "client", json.dumps(spec)] for spec in self.specs],
                             "client", limit=1 << 26)

    async def go(self, start_ns: int, end_ns: int) -> None:
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(b"go %d %d\n" % (start_ns, end_ns))
            await child.stdin.drain()

    async def results(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for child in self.children:
            assert child.stdout is not None
            async with asyncio.timeout(TURN_TIMEOUT + 30):
                line = await child.stdout.readline()
            if not line.startswith(b"{"):
                raise RuntimeError(f"client process failed: {line!r}")
            for key, value in json.loads(line).items():
                if key == "per_second":
                    old = total.get(key, [0] * len(value))
                    total[key] = [a + b for a, b in zip(old, value, strict=True)]
                else:
                    total[key] = total.get(key, 0 if isinstance(value, int) else []) + value
            await child.wait()
        return total

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(child.pid) for child in self.children)

    async def kill(self) -> None:
        for child in self.children:
            if child.returncode is None:
                child.kill()
                await child.wait()


# --- the processes measured ----------------------------------------------------------------------


def spool_worker(database_url: str, redis_url: str, concurrency: int) -> ServerProcess:
    """``python -m spool.cli worker --concurrency K`` on the server's Postgres and Redis."""
    return ServerProcess(
        [sys.executable, "-m", "spool.cli", "worker", "--concurrency", str(concurrency)],
        {"SPOOL_DATABASE_URL": database_url, "SPOOL_REDIS_URL": redis_url,
         "SPOOL_LOG_LEVEL": "warning", "SPOOL_TENANT_MAX_RUNNING_TURNS": "0"},
        "spool worker", ready="running", quiet=True)


class Measured:
    """Everything whose CPU a measurement reports, and Postgres' write counters."""

    def __init__(self, server: ServerProcess, workers: list[ServerProcess],
                 service: ServiceCpu, conn: asyncpg.Connection) -> None:
        self.server, self.workers, self.service, self.conn = server, workers, service, conn

    async def writes(self) -> tuple[int, int, int]:
        """(transactions that wrote, WAL bytes, events appended) so far, cluster-wide: the next
        xid to be assigned (reading it assigns none), the WAL insert position and the log's
        head position."""
        row = await self.conn.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
            " (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint,"
            " (SELECT position FROM log_head WHERE id = 1)")
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2] or 0)

    def sample(self, clients: ClientPool) -> dict[str, float | None]:
        times = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(times[:8]) - times[3] - times[4]) / os.sysconf("SC_CLK_TCK")
        return {
            "machine": busy,  # every CPU's busy time (user, system, irq, steal, ...)
            "bench": time.process_time(),
            "server": tree_cpu_seconds(self.server.pid),
            "worker_procs": sum(tree_cpu_seconds(w.pid) for w in self.workers),
            "postgres": self.service.postgres_seconds(),
            "valkey": self.service.valkey_seconds(),
            "clients": clients.cpu_seconds(),
        }


# What CPU per event counts.
_SERVING = ("server", "worker_procs", "postgres", "valkey")


# --- one measurement -----------------------------------------------------------------------------


def _pct(values: list[int], fraction: float) -> float | None:
    if not values:
        return None
    return percentile(sorted(values), fraction) / 1e6


async def _create_sessions(base_url: str, key: str, count: int, agent_id: str | None
                           ) -> list[str]:
    body = {"agent_id": agent_id} if agent_id else {}
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=auth) as client:

        async def one() -> str:
            response = await client.post("/v1/sessions", json=body)
            response.raise_for_status()
            return str(response.json()["id"])

        ids: list[str] = []
        for first in range(0, count, 20):
            ids += await asyncio.gather(*(one() for _ in range(min(20, count - first))))
    return ids


async def measure(mode: str, concurrency: int, setup: dict[str, Any], measured: Measured,
                  args: argparse.Namespace) -> dict[str, Any]:
    """C closed-loop clients, each on a new session (with the agent for turns, without one
    for appends)."""
    server = measured.server
    sessions = await _create_sessions(server.base_url, setup["key"], concurrency,
                                      setup["agent_id"] if mode == "turns" else None)
    spec = {"mode": mode, "host": server.host, "port": server.port, "key": setup["key"],
            "message": setup["message"], "sessions": sessions}
    pool = ClientPool(spec, min(args.client_procs, concurrency))
    try:
        await pool.start()
        start_ns = time.monotonic_ns() + int(args.warmup * 1e9)
        end_ns = start_ns + int(args.seconds * 1e9)
        await pool.go(start_ns, end_ns)
        await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        writes_before = await measured.writes()
        before, wall_before = measured.sample(pool), time.monotonic()
        await asyncio.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
        after, wall = measured.sample(pool), time.monotonic() - wall_before
        writes_after = await measured.writes()
        out = await pool.results()
    finally:
        await pool.kill()
    if not out["count"] or not out["latency_ns"]:
        raise RuntimeError(f"{mode} x{concurrency}: nothing completed in the window ({out})")
    cores: dict[str, float | None] = {}
    for name, first in before.items():
        last = after[name]
        cores[name] = None if first is None or last is None else (last - first) / wall
    # What else ran on the machine meanwhile (the other engineer's tests, say): noise.
    ours = sum(v or 0.0 for k, v in cores.items() if k != "machine")
    cores["other"] = max(0.0, (cores.pop("machine") or 0.0) - ours)
    cores.pop("bench")
    rate = out["count"] / args.seconds
    done = max(1, out["count"])
    # CPU per event appended in the window, over every process that serves them: the server
    # (and its children), worker processes, every Postgres process and Valkey; not the clients.
    events = writes_after[2] - writes_before[2]
    served = [after[k] - before[k] for k in _SERVING  # type: ignore[operator]
              if before[k] is not None and after[k] is not None]
    result: dict[str, Any] = {
        "rate": rate, "errors": out["errors"],
        "events_appended": events,
        "cpu_ms_per_event": 1000.0 * sum(served) / events if events else None,
        "pg_write_txns_per_op": (writes_after[0] - writes_before[0]) / done,
        "pg_wal_kib_per_op": (writes_after[1] - writes_before[1]) / 1024 / done,
        "latency_p50_ms": _pct(out["latency_ns"], 0.50),
        "latency_p99_ms": _pct(out["latency_ns"], 0.99),
        **{f"{name}_cores": value for name, value in cores.items()},
    }
    if mode == "turns":
        ttfd = [t for t in out["ttfd_ns"] if t >= 0]
        result.update({
            "ttfd_p50_ms": _pct(ttfd, 0.50), "ttfd_p99_ms": _pct(ttfd, 0.99),
            "no_delta": len(out["ttfd_ns"]) - len(ttfd), "failed": out["failed"],
            "deltas_per_turn": sum(out["deltas"]) / max(1, len(out["deltas"])),
            "events_per_turn": sum(out["events"]) / max(1, len(out["events"])),
            "turns_per_session": max(out["turn_index"], default=0),
            "turns_per_s_by_second": out["per_second"],
        })
    return result


async def _setup(server: ServerProcess, tokens: int) -> dict[str, Any]:
    """A new tenant, member key and echoing scripted agent."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        key = (await new_tenant(client)).key
        response = await client.post(
            "/v1/agents", json={"name": "bench-echo", "model": {"adapter": "scripted"}},
            headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        agent_id = response.json()["id"]
    # The echo is "You said: <message>": 2 words + the message's words.
    message = " ".join(f"w{i}" for i in range(tokens - 2))
    return {"key": key, "agent_id": agent_id, "message": message}


def _fmt(mode: str, r: dict[str, Any]) -> str:
    if mode == "turns":
        return (f"{r['rate']:,.1f} turns/s, ttfd p50 {r['ttfd_p50_ms']:.1f} ms p99 "
                f"{r['ttfd_p99_ms']:.1f} ms, turn p50 {r['latency_p50_ms']:.1f} ms p99 "
                f"{r['latency_p99_ms']:.1f} ms ({r['turns_per_session']} turns/session), "
                f"server {r['server_cores']:.2f} cores, {_per_event(r)}")
    return (f"{r['rate']:,.0f} appends/s, p50 {r['latency_p50_ms']:.2f} ms p99 "
            f"{r['latency_p99_ms']:.2f} ms, server {r['server_cores']:.2f} cores, {_per_event(r)}")


def _per_event(r: dict[str, Any]) -> str:
    cpu = r["cpu_ms_per_event"]
    return "cpu/event -" if cpu is None else f"cpu/event {cpu:.3f} ms"


async def bench(args: argparse.Namespace, admin_url: str, redis_url: str) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {}
    service = ServiceCpu(admin_url)
    async with fresh_database(admin_url, schema=False) as database_url:
        server = spool_server(database_url, redis_url, SPOOL_WORKERS=str(args.workers),
                              **UNLIMITED)
        server.quiet = True
        await server.start()
        workers: list[ServerProcess] = []
        measured: Measured | None = None
        try:
            for _ in range(args.worker_procs):
                workers.append(await spool_worker(
                    database_url, redis_url, args.worker_concurrency).start())
            measured = Measured(server, workers, service, await asyncpg.connect(database_url))
            setup = await _setup(server, args.tokens)
            for run in range(1, args.runs + 1):
                log(f"run {run}/{args.runs}")
                for concurrency in args.concurrency:
                    for mode in ("turns", "append"):
                        result = await measure(mode, concurrency, setup, measured, args)
                        samples.setdefault(f"{mode}/{concurrency}", []).append(result)
                        log(f"  {mode:6} x{concurrency:<4} {_fmt(mode, result)}")
        finally:
            if measured is not None:
                await measured.conn.close()
            for worker in workers:
                await asyncio.to_thread(worker.stop)
            await asyncio.to_thread(server.stop)
    return build_result(samples, args, service)


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        if isinstance(runs[0][key], list):  # per second: the median of each second
            out[key] = [median(column) for column in zip(*(run[key] for run in runs),
                                                         strict=True)]
            continue
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(median(values), 3) if values else None
    return out


def build_result(samples: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
                 service: ServiceCpu) -> dict[str, Any]:
    per_turn_events = args.tokens + EXTRA_EVENTS
    turns: dict[str, Any] = {}
    append: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    # Every turn streamed exactly --tokens deltas in tokens + 6 events and completed; no
    # request failed.
    every_turn = [run for c in args.concurrency for run in samples[f"turns/{c}"]]
    checks = {
        "deltas_per_turn_exact": all(r["deltas_per_turn"] == args.tokens for r in every_turn),
        "events_per_turn_exact": all(r["events_per_turn"] == per_turn_events
                                     for r in every_turn),
        "turns_not_completed": sum(r["failed"] + r["no_delta"] for r in every_turn),
        "request_errors": sum(r["errors"] for runs in samples.values() for r in runs),
    }
    for c in args.concurrency:
        t, a = _median_of(samples[f"turns/{c}"]), _median_of(samples[f"append/{c}"])
        turns[str(c)], append[str(c)] = t, a
        ms_per_turn = 1000.0 / t["rate"]
        ms_as_appends = 1000.0 * per_turn_events / a["rate"]
        server = {"server": "server_cores", "worker_procs": "worker_procs_cores"}
        turn_cpu = sum(t[k] or 0.0 for k in server.values()) * ms_per_turn
        append_cpu = sum(a[k] or 0.0 for k in server.values()) * ms_as_appends
        row = {
            "ms_per_turn": round(ms_per_turn, 3),
            "ms_as_plain_appends": round(ms_as_appends, 3),
            "overhead_ms_per_turn": round(ms_per_turn - ms_as_appends, 3),
            "ratio_turn_vs_appends": round(ms_per_turn / ms_as_appends, 3),
            "turn_events_eps": round(t["rate"] * per_turn_events, 1),
            "server_cpu_ms_per_turn": round(turn_cpu, 3),
            "server_cpu_ms_as_plain_appends": round(append_cpu, 3),
            "server_cpu_overhead_ms_per_turn": round(turn_cpu - append_cpu, 3),
            "pg_write_txns_per_turn": round(t["pg_write_txns_per_op"], 2),
            "pg_write_txns_as_plain_appends": round(a["pg_write_txns_per_op"]
                                                    * per_turn_events, 2),
            "pg_wal_kib_per_turn": round(t["pg_wal_kib_per_op"], 1),
            "pg_wal_kib_as_plain_appends": round(a["pg_wal_kib_per_op"] * per_turn_events, 1),
        }
        if t.get("postgres_cores") is not None and a.get("postgres_cores") is not None:
            pg_turn = t["postgres_cores"] * ms_per_turn
            pg_append = a["postgres_cores"] * ms_as_appends
            row.update({"postgres_cpu_ms_per_turn": round(pg_turn, 3),
                        "postgres_cpu_ms_as_plain_appends": round(pg_append, 3)})
        overhead[str(c)] = row
    return {
        "bench": "turns",
        "tokens": args.tokens,
        "events_per_turn": per_turn_events,
        "turns": turns,
        "append": append,
        "overhead": overhead,
        "checks": checks,
        "samples": {name: {k: [round(run[k], 2) for run in runs] for k in SAMPLE_KEYS
                           if k in runs[0]}
                    for name, runs in samples.items()},
        "workers": args.workers,
        "worker_procs": args.worker_procs,
        "worker_concurrency": args.worker_concurrency if args.worker_procs else 0,
        "client_procs": args.client_procs,
        "services_cpu_measured": service.postmaster is not None,
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "seconds": args.seconds,
        "warmup": args.warmup,
    }


def print_table(result: dict[str, Any]) -> None:
    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    n = result["events_per_turn"]
    log("")
    log(f"{result['tokens']} tokens per reply = {n} events per turn; in-process workers "
        f"{result['workers']}, worker processes {result['worker_procs']} "
        f"(x{result['worker_concurrency']}); {result['cpus']} CPUs; medians of "
        f"{result['runs']} runs of {result['seconds']} s; times in ms")
    rows = []
    for c, t in result["turns"].items():
        a = result["append"][c]
        rows.append([
            c, num(t["rate"], ",.1f"), num(t["cpu_ms_per_event"], ".3f"),
            num(t["ttfd_p50_ms"], ".1f"), num(t["ttfd_p99_ms"], ".1f"),
            num(t["latency_p50_ms"], ".1f"), num(t["latency_p99_ms"], ".1f"),
            num(t["turns_per_session"], ".0f"),
            " ".join(f"{v:.0f}" for v in t["turns_per_s_by_second"]),
            num(a["rate"], ",.0f"), num(a["cpu_ms_per_event"], ".3f"),
            num(a["latency_p50_ms"], ".2f"),
            num(a["latency_p99_ms"], ".2f"),
        ])
    log(render_table(["sessions", "turns/s", "cpu ms/event", "ttfd p50", "ttfd p99",
                      "turn p50", "turn p99", "turns/session", "turns/s each second",
                      "appends/s", "cpu ms/event", "append p50",
                      "append p99"], rows))
    log("")
    log(f"per turn, against the same {n} events appended as plain messages (x{n} the "
        "append figures)")
    rows = []
    for c, o in result["overhead"].items():
        t, a = result["turns"][c], result["append"][c]

        def cores(r: dict[str, Any]) -> str:
            return "/".join(num(r[k], ".2f") for k in (
                "server_cores", "worker_procs_cores", "postgres_cores", "other_cores"))

        rows.append([
            c, num(o["ms_per_turn"], ".2f"), num(o["ms_as_plain_appends"], ".2f"),
            num(o["overhead_ms_per_turn"], "+.2f"), num(o["server_cpu_ms_per_turn"], ".2f"),
            num(o["server_cpu_ms_as_plain_appends"], ".2f"),
            num(o.get("postgres_cpu_ms_per_turn"), ".2f"),
            num(o.get("postgres_cpu_ms_as_plain_appends"), ".2f"),
            num(o["pg_write_txns_per_turn"], ".1f"),
            num(o["pg_write_txns_as_plain_appends"], ".1f"),
            cores(t), cores(a),
        ])
    checks = result["checks"]
    if not (checks["deltas_per_turn_exact"] and checks["events_per_turn_exact"]
            and not checks["turns_not_completed"] and not checks["request_errors"]):
        log(f"WARNING: {checks}")
    log(render_table(["sessions", "ms/turn", "as appends", "overhead", "spool cpu",
                      "as appends", "pg cpu", "as appends", "pg txns", "as appends",
                      "turn cores srv/wrk/pg/other", "append cores"], rows))


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--tokens", type=int, default=20, help="words (deltas) per reply, >= 3")
    parser.add_argument("--concurrency", default="1,10,100",
                        help="comma-separated numbers of concurrent sessions")
    add_options(parser, "seconds", "warmup", "runs")
    parser.add_argument("--workers", type=int, default=8,
                        help="sessions the server's in-process worker runs at once "
                        "(SPOOL_WORKERS; 0 = none)")
    parser.add_argument("--worker-procs", type=int, default=0,
                        help="extra `spool worker` processes")
    parser.add_argument("--worker-concurrency", type=int, default=8,
                        help="--concurrency of each extra worker process")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="processes the clients are spread over")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.tokens < 3:
        parser.error("--tokens must be at least 3 (the echo adds 'You said:')")
    if args.workers < 1 and args.worker_procs < 1:
        parser.error("no worker would run the turns: --workers or --worker-procs >= 1")
    return args


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        install_uvloop()
        asyncio.run(_run_clients(json.loads(sys.argv[2])))
        return
    args = parse_args()
    run_on_services(lambda found: bench(args, *found), print_table)


if __name__ == "__main__":
    main()
