"""HTTP submission: POST /v1/sessions/{id}/messages at 64 connections, driven by ``wrk``,
beside the bare limit of the same Postgres measured in the same run.

* ``engine``: ``spool serve`` (``--processes`` of them on one port) on a fresh database, with
  everything a submission does: auth (a member key), validation, the rate limit (on, set far
  above the load), the access log (``SPOOL_LOG_LEVEL=info``, written to a pipe the bench
  drains), the commit before the 202, the fan-out. The sessions have no agent, so a message is
  recorded and no turn runs: this measures the submission path, not the runtime.
* ``bare``: the raw limit. uvicorn + Starlette + asyncpg in a process of its own (``python
  bench/http_submit.py bare``): one route that parses the JSON body and group-commits one row
  per request into the same ``events`` table (one committer task, every pending row in one
  ``INSERT ... SELECT FROM unnest(...)``, positions and per-stream seqs counted in memory), and
  answers 202 with the row once its transaction committed. Nothing else.
* ``bare_single`` (reference): the same app, one INSERT per request over a pool of 10.
* ``bare_nodb`` (reference): the same app, no database at all.

The load generator is ``wrk`` (Debian's package; ``make bench`` installs it when apt-get can):
a C program, so it is not the bottleneck a Python client is (httpx tops out near 100 req/s
here). ``-t2 -c64``, the requests spread round-robin over 64 sessions (streams) by a Lua
script that also prints wrk's figures as JSON. Each measurement: ``--warmup`` seconds of load
unmeasured, then ``--seconds`` measured, on a fresh database; ``--runs`` repetitions
interleaved (bare, engine, references), medians reported.

Each measurement also records the CPU of the servers, Postgres, Valkey and wrk over the measured
seconds, and their sum per answered request (``cpu_us_per_request``): on a machine whose cores
are all busy, that sum is what bounds the rate.

    .venv/bin/python bench/http_submit.py [--seconds 5] [--warmup 2] [--runs 3]
        [--connections 64] [--processes 1] [--idempotency-keys]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _common import (
    REPO_ROOT,
    ServerProcess,
    ServiceCpu,
    Services,
    add_options,
    arguments,
    cpu_seconds,
    flush_redis,
    fresh_database,
    log,
    median,
    new_tenant,
    redis_db,
    render_table,
    run_on_services,
    serve_bare,
    spool_server,
)

SCRIPT = str(Path(__file__).resolve())
SESSIONS = 64
THREADS = 2
BODY = '{"content":"hello from wrk"}'
BARE_MODES = ("bare", "bare_single", "bare_nodb")
# The limiter runs, far above the load: its cost is counted, it never refuses.
RATE_LIMIT = "10000000"
ERRORS = ("connect", "read", "write", "status", "timeout")  # wrk's error counts
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0

# wrk's Lua side: requests round-robin over the paths given after `--`, an Idempotency-Key per
# request when asked, and the summary as one JSON line.
WRK_SCRIPT = r"""
local paths, counter, thread_id = {}, 0, 0
local keyed = false
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  keyed = args[1] == "keyed"
  for i = 2, #args do paths[#paths + 1] = args[i] end
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end

function request()
  counter = counter + 1
  local path = paths[(counter + thread_id) % #paths + 1]
  local headers = nil
  if keyed then
    headers = {["Idempotency-Key"] = "wrk-" .. thread_id .. "-" .. counter}
  end
  return wrk.format("POST", path, headers, wrk.body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# --- the bare app (run as `python bench/http_submit.py bare MODE DATABASE_URL`) ------------------

_INSERT = """
INSERT INTO events (position, id, tenant_id, stream_id, stream_type, seq, type, data, meta,
                    created_at)
SELECT p, i, 'ten_bare', s, 'session', q, 'user_message', d, '{}', now()
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::json[]) AS x(p, i, s, q, d)
"""


class GroupCommit:
    """One committer task: every row that arrived while the previous transaction ran goes into
    the next one. Positions and per-stream seqs are counted in memory (one process)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.pending: list[tuple[list[Any], asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.position = 0
        self.seqs: dict[str, int] = {}

    def row(self, stream_id: str, data: bytes) -> list[Any]:
        self.position += 1
        seq = self.seqs[stream_id] = self.seqs.get(stream_id, 0) + 1
        return [self.position, uuid.uuid4(), stream_id, seq, data]

    async def add(self, row: list[Any]) -> None:
        done = asyncio.get_running_loop().create_future()
        self.pending.append((row, done))
        self.wake.set()
        await done

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            columns = [list(column) for column in zip(*(row for row, _ in batch), strict=True)]
            await self.pool.execute(_INSERT, *columns)
            for _, done in batch:
                done.set_result(None)


def bare_app(mode: str, database_url: str) -> Any:
    import asyncpg
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from engine.infra.db import init_connection

    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if mode == "bare_nodb":
            yield
            return
        async with asyncpg.create_pool(database_url, min_size=10, max_size=10,
                                       init=init_connection) as pool:
            state["pool"], state["group"] = pool, GroupCommit(pool)
            task = asyncio.create_task(state["group"].run())
            yield
            task.cancel()

    async def submit(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        if not isinstance(body.get("content"), str):
            return JSONResponse({"error": "content"}, status_code=422)
        stream_id = request.path_params["session_id"]
        data = json.dumps({"content": body["content"]}).encode()
        if mode == "bare_nodb":
            return JSONResponse({"stream_id": stream_id}, status_code=202)
        group: GroupCommit = state["group"]
        row = group.row(stream_id, data)
        if mode == "bare":
            await group.add(row)
        else:
            await state["pool"].execute(_INSERT, [row[0]], [row[1]], [row[2]], [row[3]],
                                        [row[4]])
        return JSONResponse({"id": str(row[1]), "stream_id": stream_id, "seq": row[3],
                             "position": row[0]}, status_code=202)

    return Starlette(routes=[Route("/v1/sessions/{session_id}/messages", submit,
                                   methods=["POST"])],
                     lifespan=lifespan)


async def _serve_bare(mode: str, database_url: str) -> None:
    await serve_bare(bare_app(mode, database_url), "bare submit server", loop="uvloop")


def bare_server(mode: str, database_url: str) -> ServerProcess:
    return ServerProcess([sys.executable, SCRIPT, "bare", mode, database_url],
                         {"PYTHONPATH": str(REPO_ROOT)}, mode, quiet=True)


# --- wrk -----------------------------------------------------------------------------------------


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench/http_submit.py needs wrk (Debian: apt-get install wrk)")
    return found


def run_wrk(base_url: str, paths: list[str], key: str, seconds: float, connections: int,
            keyed: bool, script: Path) -> dict[str, Any]:
    argv = [wrk_path(), f"-t{THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(script), base_url, "--", "keyed" if keyed else "plain", *paths]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True,
                                 env={**os.environ, "BENCH_KEY": key, "BENCH_BODY": BODY})
        _, status, usage = os.wait4(child.pid, 0)  # wrk's own CPU, no other child's
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode:
        raise RuntimeError(f"wrk exited {child.returncode}: {stderr[-500:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {stdout[-500:]} {stderr[-500:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    found["wrk_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    found["errors"] = sum(found[kind] for kind in ERRORS)
    # Only answered requests count: a non-2xx answer (found["status"]) is an error, not a rate.
    found["rate"] = (found["requests"] - found["status"]) / (found["duration_us"] / 1e6)
    return found


async def measure(server: ServerProcess, pids: list[int], paths: list[str], key: str,
                  args: argparse.Namespace, script: Path, services: ServiceCpu,
                  database_url: str) -> dict[str, Any]:
    """Warm-up load, then the measured load; over the measured part, the CPU of the servers,
    Postgres, Valkey and wrk, and so what a request costs in all, and the write transactions
    per request."""
    await asyncio.to_thread(run_wrk, server.base_url, paths, key, args.warmup, args.connections,
                            args.idempotency_keys, script)
    xid_before = await _next_xid(database_url)
    before, started = _cpu(pids, services), time.monotonic()
    found = await asyncio.to_thread(run_wrk, server.base_url, paths, key, args.seconds,
                                    args.connections, args.idempotency_keys, script)
    span = time.monotonic() - started
    used = {part: seconds - before[part] for part, seconds in _cpu(pids, services).items()}
    used["wrk"] = found["wrk_cpu_seconds"]
    found.update({f"{part}_cores": seconds / span for part, seconds in used.items()})
    answered = found["requests"] - found["status"]
    found["cpu_us_per_request"] = sum(used.values()) / answered * 1e6 if answered else 0
    # Cluster-wide (autovacuum counts too): an upper bound on the server's own.
    found["pg_write_txns_per_request"] = (
        (await _next_xid(database_url) - xid_before) / answered if answered else 0)
    if found["errors"]:
        counts = ", ".join(f"{kind} {found[kind]}" for kind in ERRORS if found[kind])
        log(f"  {server.name}: {found['errors']} errors ({counts})")
    return found


async def _next_xid(database_url: str) -> int:
    """The next transaction id Postgres will assign (reading it assigns none): how many
    transactions that wrote anything have begun, cluster-wide."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
    finally:
        await conn.close()


def _cpu(pids: list[int], services: ServiceCpu) -> dict[str, float]:
    """CPU seconds so far of the servers, Postgres and Valkey (an external service counts 0:
    it may be on another machine)."""
    return {"server": sum(cpu_seconds(pid) for pid in pids),
            "postgres": services.postgres_seconds() or 0.0,
            "valkey": services.valkey_seconds() or 0.0}


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it (``spool serve --processes N`` has children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    below = [int(child) for child in children.read_text().split()] if children.exists() else []
    return [pid, *(each for child in below for each in _tree(child))]


async def engine_run(svc: Services, run: int, args: argparse.Namespace,
                     script: Path) -> dict[str, Any]:
    redis_url = redis_db(svc.redis_url, run)
    await flush_redis(redis_url)
    async with fresh_database(svc.postgres_url) as database_url:
        env = {"SPOOL_TURN_RATE_LIMIT": RATE_LIMIT, "SPOOL_LOG_LEVEL": "info",
               "SPOOL_PROCESSES": str(args.processes)}
        server = spool_server(database_url, redis_url, **env)
        server.quiet, server.drain = True, True
        await server.start()
        try:
            key, paths = await _sessions(server.base_url)
            return await measure(server, _tree(server.pid), paths, key, args, script,
                                 ServiceCpu(svc.postgres_url), database_url)
        finally:
            server.stop()


async def _sessions(base_url: str) -> tuple[str, list[str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        tenant = await new_tenant(client)
        headers = {"Authorization": f"Bearer {tenant.key}"}
        paths = []
        for _ in range(SESSIONS):
            response = await client.post("/v1/sessions", json={}, headers=headers)
            response.raise_for_status()
            paths.append(f"/v1/sessions/{response.json()['id']}/messages")
        return tenant.key, paths


async def bare_run(svc: Services, mode: str, args: argparse.Namespace,
                   script: Path) -> dict[str, Any]:
    async with fresh_database(svc.postgres_url) as database_url:
        server = await bare_server(mode, database_url).start()
        try:
            paths = [f"/v1/sessions/ses_bare_{index}/messages" for index in range(SESSIONS)]
            return await measure(server, [server.pid], paths, "none", args, script,
                                 ServiceCpu(svc.postgres_url), database_url)
        finally:
            server.stop()


# --- the runs and the report ---------------------------------------------------------------------


KEYS = ("rate", "p50_us", "p99_us", "server_cores", "postgres_cores", "valkey_cores", "wrk_cores",
        "cpu_us_per_request", "pg_write_txns_per_request", "errors")


async def bench(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="spool-wrk-") as scratch:
        script = Path(scratch) / "submit.lua"
        script.write_text(WRK_SCRIPT)
        for run in range(1, args.runs + 1):
            log(f"run {run}/{args.runs}")
            for mode in ("bare", "engine", *([] if args.no_references else BARE_MODES[1:])):
                found = (await engine_run(svc, run, args, script) if mode == "engine"
                         else await bare_run(svc, mode, args, script))
                samples.setdefault(mode, []).append({key: found[key] for key in KEYS})
                log(f"  {mode}: {found['rate']:,.0f} req/s, "
                    f"p50 {found['p50_us'] / 1000:.1f} ms, p99 {found['p99_us'] / 1000:.1f} ms, "
                    f"server {found['server_cores']:.2f} cores")
    return build_result(samples, args)


def build_result(samples: dict[str, list[dict[str, Any]]],
                 args: argparse.Namespace) -> dict[str, Any]:
    med = {mode: {key: median([s[key] for s in runs]) for key in KEYS}
           for mode, runs in samples.items()}
    ratio = med["engine"]["rate"] / med["bare"]["rate"]
    paired = [e["rate"] / b["rate"] for e, b in zip(samples["engine"], samples["bare"],
                                                      strict=True)]
    p99_ms = med["engine"]["p99_us"] / 1000
    return {
        "bench": "http_submit",
        "load_generator": "wrk",
        "connections": args.connections,
        "threads": THREADS,
        "sessions": SESSIONS,
        "processes": args.processes,
        "idempotency_keys": args.idempotency_keys,
        "medians": {mode: {key: round(value, 3) for key, value in figures.items()}
                    for mode, figures in med.items()},
        "ratio_engine_vs_bare": round(ratio, 3),
        "ratio_engine_vs_bare_per_run": [round(r, 3) for r in paired],
        "targets": {
            "engine_vs_bare_min": TARGET_RATIO,
            "engine_vs_bare_met": ratio >= TARGET_RATIO,
            "engine_p99_ms_max": TARGET_P99_MS,
            "engine_p99_met": p99_ms <= TARGET_P99_MS,
        },
        "samples": samples,
        "runs": args.runs,
        "seconds": args.seconds,
        "warmup": args.warmup,
    }


LABELS = {
    "bare": "bare Starlette + asyncpg, group commit (raw limit)",
    "engine": "spool serve",
    "bare_single": "bare, one INSERT per request (reference)",
    "bare_nodb": "bare, no database (reference)",
}


def print_table(result: dict[str, Any]) -> None:
    med = result["medians"]
    bare = med["bare"]["rate"]
    rows = [[LABELS[mode], f"{figures['rate']:,.0f}", f"{figures['p50_us'] / 1000:.1f}",
             f"{figures['p99_us'] / 1000:.1f}", f"{figures['server_cores']:.2f}",
             f"{figures['postgres_cores']:.2f}", f"{figures['valkey_cores']:.2f}",
             f"{figures['wrk_cores']:.2f}", f"{figures['cpu_us_per_request']:.0f}",
             f"{figures['pg_write_txns_per_request']:.2f}",
             f"{figures['rate'] / bare:.2f}"] for mode, figures in med.items()]
    log("")
    log(render_table(["server", "req/s (median)", "p50 ms", "p99 ms", "server cores",
                      "postgres", "valkey", "wrk", "CPU us/request", "pg write txns/request",
                      "vs bare"], rows))
    targets = result["targets"]
    log(f"target engine >= {TARGET_RATIO:.0%} of bare: {result['ratio_engine_vs_bare']:.1%} -> "
        f"{'MET' if targets['engine_vs_bare_met'] else 'NOT MET'} (per run: "
        f"{', '.join(f'{r:.0%}' for r in result['ratio_engine_vs_bare_per_run'])})")
    log(f"target engine p99 <= {TARGET_P99_MS:g} ms: {med['engine']['p99_us'] / 1000:.1f} ms -> "
        f"{'MET' if targets['engine_p99_met'] else 'NOT MET'}")


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    add_options(parser, "seconds", "runs")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1,
                        help="spool serve --processes (SPOOL_PROCESSES)")
    parser.add_argument("--idempotency-keys", action="store_true",
                        help="send an Idempotency-Key with every request")
    parser.add_argument("--no-references", action="store_true",
                        help="skip the two reference servers (one insert per request, no db)")
    return parser.parse_args()


def main() -> None:
    if sys.argv[1:2] == ["bare"]:
        asyncio.run(_serve_bare(sys.argv[2], sys.argv[3]))
        return
    wrk_path()
    args = parse_args()
    run_on_services(lambda svc: bench(svc, args), print_table)


if __name__ == "__main__":
    main()
