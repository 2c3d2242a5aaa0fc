"""Projections: rebuild rate over a 1M-event log, and steady-state lag at 5,000 appended events/s.

Per run, in a fresh database:

* **load** a realistic log of ``--events`` events (default 1,000,000): sessions with agents
  running turns (``user_message``, ``turn_started``, ``message_start``, ~20 ``message_delta``,
  ``message_stop`` with usage, ``spend_recorded``, ``session_done``), a tenth of the turns through
  a tool call waiting for approval (``approval_requested`` -> ``approval_resolved``, or left
  pending and cancelled by ``session_done``), agents (``agent_created``, ``agent_heartbeat``),
  boards and tasks (``board_created``, ``task_created`` with dependencies, ``task_updated``
  status changes, the engine's unblocking, ``task_commented``). Every event is built from the
  real structs in engine/events.py (``new_event``). The load **bypasses the store**: the rows
  go in with ``COPY`` (``events``, ``streams``, ``log_head``; positions gapless from 1, seq per
  stream from 1, created_at in position order), then ``VACUUM ANALYZE`` (a log that has been
  there a while). The store's append rate is bench/append.py's subject, not this one's.
* ``raw_read``: **the raw limit**: one asyncpg connection reading the whole log in pages of
  1,000 with ``read_log_page``'s query, rows not turned into events.
* ``rebuild``: ``engine.projections.checks.rebuild(pool, NAME)`` (what ``spool projections
  rebuild NAME`` runs, on its event loop: uvloop when installed; so does everything else here)
  for every view in ``VIEWS``, timed from call to return (replay from 0 into
  temporary tables, swap into the live tables, move the checkpoint). events/s = log head /
  seconds; ``all`` = log head / the sum of the views' seconds (rebuilding every view in turn).
* ``lag``: the engine as ``spool serve`` runs it (``engine.engine.Engine``, no workers, uvloop
  when installed) on that same database (checkpoints at the head), while a writer in the same
  process appends more of the same mix through ``engine.log.store`` at ``--rate`` (default 5,000)
  events/s for ``--lag-seconds`` after ``--lag-warmup``. Sampled every ``--sample-ms`` (50) on a
  connection of its own: log head - each projection's checkpoint, in events. Lag in ms: for
  every appended event, (when its projection's page had committed) - (when the store had
  committed it); both times are read in the engine's process (the store's commit listener, and
  each runner's page, which returns after its commit).

Medians of ``--runs`` runs. Postgres (and Valkey for the lag) are embedded unless
SPOOL_DATABASE_URL / SPOOL_REDIS_URL are set.

    .venv/bin/python bench/projections.py [--events 1000000] [--runs 3] [--rate 5000]
    .venv/bin/python bench/projections.py --events 20000 --runs 1 --lag-seconds 5  # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from _common import (
    add_options,
    arguments,
    finish,
    flush_redis,
    fresh_database,
    log,
    median,
    percentile,
    raise_fd_limit,
    redis_db,
    render_table,
    server_facts,
    services,
    timed_page_read,
)

from engine.events import (
    AgentConfig,
    AgentCreated,
    AgentHeartbeat,
    ApprovalRequested,
    ApprovalResolved,
    BoardCreated,
    ContentBlock,
    EventData,
    EventMeta,
    MessageDelta,
    MessageStart,
    MessageStop,
    NewEvent,
    SessionCreated,
    SessionDone,
    SpendRecorded,
    TaskCommented,
    TaskCreated,
    TaskUpdated,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    new_event,
)
from engine.infra.db import create_pool, init_connection
from engine.projections.checks import rebuild
from engine.projections.views import VIEWS
from spool.server.commands import _loop_factory

TARGET_REBUILD_EPS = 50_000
RAW_PAGE = 1000
_LOG_QUERY = (  # read_log_page's query (engine/log/store.py)
    "SELECT id, stream_id, stream_type, seq, position, type, data, meta, created_at, tenant_id"
    " FROM events WHERE position > $1 ORDER BY position LIMIT $2"
)

# --- the workload: a realistic mix, from the real event structs ---------------------------------

Item = tuple[str, str, str, NewEvent]  # tenant_id, stream_id, stream_type, event
TENANTS = 10
ACTIVE_SESSIONS = 64  # sessions whose turns interleave in the log
AGENTS_PER_TENANT = 5
BOARDS = 20
TASKS_PER_BOARD = 150  # then the board is replaced by a new one
P_HEARTBEAT = 0.01  # share of the log that is agent heartbeats
P_TASKS = 0.05  # share of the log that is board and task events
P_APPROVAL_TURN = 0.1
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while",
         "agents", "stream", "their", "replies", "token", "by", "token", "into", "the", "log"]


class Workload:
    """An endless, deterministic stream of events of many streams, interleaved as concurrent
    sessions, agents and boards would write them. ``tag`` keeps the ids of two workloads apart."""

    def __init__(self, seed: int, tag: int) -> None:
        self.rng = random.Random(seed)
        self.tag = tag
        self.counter = 0
        self.tenants = [self._id("ten") for _ in range(TENANTS)]
        self.agents: list[tuple[str, str]] = []  # (tenant, agent_id) of created agents
        self.pending: list[Item] = []
        for tenant in self.tenants:
            for _ in range(AGENTS_PER_TENANT):
                self.pending.append(self._agent_created(tenant))
        self.sessions = [self._session() for _ in range(ACTIVE_SESSIONS)]
        self.boards = [self._board() for _ in range(BOARDS)]

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.tag}{self.counter:025d}"

    def _text(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(low, high)))

    def __iter__(self) -> Iterator[Item]:
        rng = self.rng
        while True:
            if self.pending:
                yield self.pending.pop(0)
                continue
            draw = rng.random()
            if draw < P_HEARTBEAT:
                tenant, agent_id = rng.choice(self.agents)
                yield tenant, agent_id, "agent", new_event(
                    AgentHeartbeat(token_id=f"rtk_{agent_id[4:]}", note=None))
            elif draw < P_HEARTBEAT + P_TASKS:
                index = rng.randrange(BOARDS)
                item = next(self.boards[index], None)
                if item is None:  # the board is full: a new one takes its place
                    self.boards[index] = self._board()
                    item = next(self.boards[index])
                yield item
            else:
                index = rng.randrange(ACTIVE_SESSIONS)
                item = next(self.sessions[index], None)
                if item is None:
                    self.sessions[index] = self._session()
                    item = next(self.sessions[index])
                yield item

    def _agent_created(self, tenant: str) -> Item:
        agent_id = self._id("agt")
        self.agents.append((tenant, agent_id))
        config = AgentConfig(name=f"agent {agent_id[-4:]}", system=self._text(10, 30))
        return tenant, agent_id, "agent", new_event(AgentCreated(config=config))

    def _session(self) -> Iterator[Item]:
        rng = self.rng
        tenant, agent_id = rng.choice(self.agents)
        session_id = self._id("ses")
        with_agent = rng.random() < 0.9

        def item(data: EventData, meta: EventMeta | None = None) -> Item:
            return tenant, session_id, "session", new_event(data, meta=meta)

        yield item(SessionCreated(tenant_id=tenant, agent_id=agent_id if with_agent else None,
                                  agent_version=1 if with_agent else None,
                                  title=self._text(2, 5)), EventMeta(actor="key_bench"))
        for _ in range(rng.randint(1, 6)):
            turn_id = self._id("trn")
            yield item(UserMessage(turn_id=turn_id,
                                   content=[ContentBlock(text=self._text(5, 40))]),
                       EventMeta(actor="key_bench", request_id=self._id("req")))
            yield item(TurnStarted(turn_id=turn_id, worker="wrk_bench"))
            status = "completed"
            for step in range(2):
                message_id = self._id("msg")
                yield item(MessageStart(turn_id=turn_id, message_id=message_id,
                                        model="gpt-bench"))
                deltas = rng.randint(10, 30)
                for _ in range(deltas):
                    yield item(MessageDelta(message_id=message_id, text=self._text(1, 3) + " "))
                tool = step == 0 and rng.random() < P_APPROVAL_TURN
                usage = Usage(input_tokens=rng.randint(200, 4000), output_tokens=deltas * 2,
                              cache_read_tokens=rng.randint(0, 2000))
                yield item(MessageStop(message_id=message_id,
                                       stop_reason="tool_use" if tool else "end_turn",
                                       usage=usage))
                tokens = usage.input_tokens + usage.output_tokens + usage.cache_read_tokens
                yield item(SpendRecorded(turn_id=turn_id, message_id=message_id,
                                         agent_id=agent_id, model="gpt-bench", usage=usage,
                                         tokens=tokens, cost_nanos=tokens * 150))
                if not tool:
                    break
                tool_use_id, arguments = self._id("tlu"), {"path": self._text(1, 3)}
                yield item(ToolUse(turn_id=turn_id, message_id=message_id,
                                   tool_use_id=tool_use_id, name="write_file", input=arguments,
                                   executor="server"))
                approval_id = self._id("apr")
                yield item(ApprovalRequested(approval_id=approval_id, turn_id=turn_id,
                                             tool_use_id=tool_use_id, name="write_file",
                                             input=arguments))
                if rng.random() < 0.2:  # nobody decides: the turn is cancelled
                    status = "cancelled"
                    break
                decision = "approve" if rng.random() < 0.8 else "deny"
                yield item(ApprovalResolved(approval_id=approval_id, turn_id=turn_id,
                                            tool_use_id=tool_use_id, decision=decision,
                                            reason=None if decision == "approve" else "no"),
                           EventMeta(actor="key_bench"))
                yield item(ToolResult(turn_id=turn_id, tool_use_id=tool_use_id,
                                      content=[ContentBlock(text=self._text(3, 20))],
                                      is_error=decision == "deny"))
            yield item(SessionDone(turn_id=turn_id, status=status))  # type: ignore[arg-type]

    def _board(self) -> Iterator[Item]:
        """A board and its tasks: created (some waiting for others, created blocked), moved
        inbox -> in_progress -> review -> done, commented, edited; when a task's last open
        dependency is done, the engine's unblocking change (as TaskReactor appends it)."""
        rng = self.rng
        tenant = rng.choice(self.tenants)
        board_id = self._id("brd")
        yield tenant, board_id, "board", new_event(
            BoardCreated(name=self._text(1, 3), description=self._text(3, 10)))
        status: dict[str, str] = {}
        deps: dict[str, list[str]] = {}
        blocked: set[str] = set()
        flow = {"inbox": "in_progress", "in_progress": "review", "review": "done"}

        def task(task_id: str, data: EventData) -> Item:
            return tenant, task_id, "task", new_event(data, meta=EventMeta(actor="key_bench"))

        created = 0
        while created < TASKS_PER_BOARD or any(s != "done" for s in status.values()):
            movable = [t for t, s in status.items() if s != "done" and t not in blocked]
            draw = rng.random()
            if created < TASKS_PER_BOARD and (draw < 0.25 or not movable):
                task_id = self._id("tsk")
                existing = list(status)
                wants = rng.sample(existing, min(len(existing), rng.choice((0, 0, 1, 2))))
                waits = any(status[d] != "done" for d in wants)
                status[task_id], deps[task_id] = ("blocked" if waits else "inbox"), wants
                if waits:
                    blocked.add(task_id)
                created += 1
                yield task(task_id, TaskCreated(
                    board_id=board_id, title=self._text(2, 6), description=self._text(5, 20),
                    status="blocked" if waits else "inbox",
                    resume_status="inbox" if waits else None,
                    priority=rng.choice(("low", "normal", "high", "urgent")),
                    assignee_id=rng.choice(self.agents)[1], due_at=None, dependencies=wants))
            elif not movable:
                continue
            elif draw < 0.6:
                task_id = rng.choice(movable)
                status[task_id] = flow[status[task_id]]
                yield task(task_id, TaskUpdated(status=status[task_id]))  # type: ignore[arg-type]
                if status[task_id] == "done":
                    for other in sorted(blocked):
                        if all(status[d] == "done" for d in deps[other]):
                            blocked.discard(other)
                            status[other] = "inbox"
                            yield tenant, other, "task", new_event(
                                TaskUpdated(status="inbox", resume_status=None,
                                            cause="dependencies_done"),
                                meta=EventMeta(actor="engine"))
            elif draw < 0.9:
                yield task(rng.choice(movable), TaskCommented(comment_id=self._id("cmt"),
                                                              body=self._text(5, 30)))
            else:
                yield task(rng.choice(movable), TaskUpdated(
                    priority=rng.choice(("low", "normal", "high", "urgent")),
                    assignee_id=rng.choice(self.agents)[1]))


def take(workload: Iterator[Item], count: int) -> list[Item]:
    return [item for item, _ in zip(workload, range(count), strict=False)]


# --- loading the log (bypassing the store: COPY) -------------------------------------------------

_EVENT_COPY_COLUMNS = ["position", "id", "tenant_id", "stream_id", "stream_type", "seq", "type",
                       "data", "meta", "created_at"]


@dataclass
class Log:
    """The rows to COPY: events in position order, and each stream's first event."""

    events: list[tuple[Any, ...]]
    streams: list[tuple[str, str, str, datetime]]
    types: dict[str, int] = field(default_factory=dict)


def build_log(items: list[Item]) -> Log:
    seqs: dict[str, int] = {}
    streams: list[tuple[str, str, str, datetime]] = []
    types: dict[str, int] = {}
    start = datetime.now(UTC) - timedelta(days=1)
    rows: list[tuple[Any, ...]] = []
    for position, (tenant, stream_id, stream_type, event) in enumerate(items, start=1):
        created_at = start + timedelta(microseconds=50 * position)
        seq = seqs.get(stream_id, 0) + 1
        seqs[stream_id] = seq
        if seq == 1:
            streams.append((stream_id, tenant, stream_type, created_at))
        types[event.type] = types.get(event.type, 0) + 1
        rows.append((position, uuid.uuid4(), tenant, stream_id, stream_type, seq, event.type,
                     event.data, event.meta, created_at))
    return Log(rows, streams, types)


async def load_log(url: str, built: Log) -> float:
    """COPY the rows in, set the head, VACUUM ANALYZE; returns the seconds it took."""
    start = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)  # json as bytes
        async with conn.transaction():
            await conn.copy_records_to_table("events", records=built.events,
                                             columns=_EVENT_COPY_COLUMNS)
            await conn.copy_records_to_table(
                "streams", records=built.streams,
                columns=["stream_id", "tenant_id", "stream_type", "created_at"])
            await conn.execute("UPDATE log_head SET position = $1 WHERE id = 1",
                               len(built.events))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - start


# --- (a) rebuild rate, beside the raw read -------------------------------------------------------


async def raw_read(url: str, total: int) -> float:
    """Seconds to read the whole log in pages of 1000 with read_log_page's query, no decode."""
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        return await timed_page_read(lambda after: conn.fetch(_LOG_QUERY, after, RAW_PAGE), 4,
                                     total)
    finally:
        await conn.close()


async def rebuild_all(url: str, total: int) -> dict[str, float]:
    """Seconds each view's rebuild took (the CLI's pool: 2 connections)."""
    pool = await create_pool(url, size=2)
    seconds: dict[str, float] = {}
    try:
        for name in VIEWS:
            start = time.perf_counter()
            reached = await rebuild(pool, name)
            seconds[name] = time.perf_counter() - start
            if reached != total:
                raise RuntimeError(f"{name} rebuilt to {reached}, expected {total}")
            log(f"  rebuild {name}: {total / seconds[name]:,.0f} events/s "
                f"({seconds[name]:.2f} s)")
        async with pool.acquire() as conn:
            counts = {table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                      for view in VIEWS.values() for table in view.tables}
        log(f"  rows: {counts}")
    finally:
        await pool.close()
    return seconds


# --- (b) steady-state lag at --rate events/s ----------------------------------------------------


@dataclass
class LagResult:
    target_eps: float
    written_eps: float
    lag_events: dict[str, dict[str, float]]
    lag_ms: dict[str, dict[str, float]]
    process_cores: float
    samples: int


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)
    return {"p50": round(percentile(ordered, 0.5), 2), "p99": round(percentile(ordered, 0.99), 2),
            "max": round(ordered[-1], 2)}


async def measure_lag(url: str, redis_url: str, items: list[Item], *, rate: float,
                      warmup: float, seconds: float, sample_ms: float) -> LagResult:
    from engine.engine import Engine
    from engine.logging import configure_logging
    from engine.settings import Settings

    configure_logging("warning")
    settings = Settings(database_url=url, redis_url=redis_url, workers=0, log_level="warning")
    commits: list[tuple[float, int, int]] = []  # (when the store committed, first, last)
    applied: dict[str, list[tuple[float, int]]] = {}  # projection -> (after its commit, position)
    async with Engine(settings) as engine:
        store = engine.store
        store.on_commit(lambda batch: commits.append(
            (time.perf_counter(), batch[0][1].position, batch[-1][1].position)))
        for runner in engine._projections:  # the live runners, started as the engine does
            applied[runner.projection.name] = _record_pages(runner)
        sampler_stop = asyncio.Event()
        head_lags: dict[str, list[float]] = {name: [] for name in applied}
        window: list[float] = []  # [start, end] of the measured window
        sampler = asyncio.create_task(
            _sample(url, head_lags, sample_ms / 1000, sampler_stop, window))
        cpu_before = wall_before = 0.0
        written = 0
        start = time.perf_counter()
        sent = 0
        measured_from = measured_count = 0
        while True:
            now = time.perf_counter() - start
            if now >= warmup + seconds or sent >= len(items):
                break
            if not window and now >= warmup:
                window.append(time.perf_counter())
                measured_from, cpu_before, wall_before = sent, time.process_time(), now
            due = min(len(items), int(now * rate) + 1)
            if due > sent:
                written += await _append_due(store, items[sent:due])
                sent = due
            await asyncio.sleep(0.005)
        end = time.perf_counter()
        window.append(end)
        measured_count = sent - measured_from
        cores = (time.process_time() - cpu_before) / max(end - start - wall_before, 1e-9)
        await _drained(url, [*applied], await store.head())
        sampler_stop.set()
        await sampler
    written_eps = measured_count / (window[1] - window[0])
    lag_ms = {name: _percentiles(_latencies(commits, pages, window))
              for name, pages in applied.items()}
    lag_events = {name: _percentiles(values) for name, values in head_lags.items()}
    samples = min((len(v) for v in head_lags.values()), default=0)
    return LagResult(rate, written_eps, lag_events, lag_ms, cores, samples)


async def _drained(url: str, names: list[str], last: int) -> None:
    """Wait (at most 30 s) until every projection has applied the log up to ``last``."""
    from engine.projections.runner import reached

    pool = await create_pool(url, size=1)
    try:
        for name in names:
            if not await reached(pool, name, last, 30):
                log(f"  {name} did not reach position {last} within 30 s")
    finally:
        await pool.close()


def _record_pages(runner: Any) -> list[tuple[float, int]]:
    """Wrap the runner's page step: after each page it applied (and committed), note when and
    up to which position."""
    pages: list[tuple[float, int]] = []
    apply_page = runner._apply_page

    async def recorded(conn: Any) -> bool:
        moved: bool = await apply_page(conn)
        if moved:
            pages.append((time.perf_counter(), runner.position))
        return moved

    runner._apply_page = recorded
    return pages


async def _append_due(store: Any, items: list[Item]) -> int:
    """Append ``items`` as the runtime and clients would: one append per run of consecutive
    events of a stream, all concurrently (the store's group commit batches them)."""
    calls: list[tuple[Item, list[NewEvent]]] = []
    for item in items:
        if calls and calls[-1][0][1] == item[1]:
            calls[-1][1].append(item[3])
        else:
            calls.append((item, [item[3]]))
    await asyncio.gather(*(store.append(first[1], events, tenant_id=first[0],
                                        stream_type=first[2]) for first, events in calls))
    return len(items)


async def _sample(url: str, lags: dict[str, list[float]], every: float, stop: asyncio.Event,
                  window: list[float]) -> None:
    """Every ``every`` s during the measured window: log head - each checkpoint."""
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT c.name, h.position - c.position FROM projection_checkpoints c,"
                " log_head h WHERE h.id = 1")
            if len(window) == 1:
                for name, lag in rows:
                    if name in lags:
                        lags[name].append(float(lag))
            elif len(window) == 2:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
    finally:
        await conn.close()


def _latencies(commits: list[tuple[float, int, int]], pages: list[tuple[float, int]],
               window: list[float]) -> list[float]:
    """Milliseconds from commit to applied for every event committed in the window (each
    committed batch counts once per event in it)."""
    page_positions = [position for _, position in pages]
    out: list[float] = []
    for committed_at, first, last in commits:
        if not window[0] <= committed_at <= window[1]:
            continue
        index = bisect.bisect_left(page_positions, last)
        if index == len(pages):
            continue  # never applied (reported by the drain check)
        out.extend([(pages[index][0] - committed_at) * 1000] * (last - first + 1))
    return out


# --- runs ----------------------------------------------------------------------------------------


@dataclass
class RunResult:
    load_s: float
    raw_read_s: float
    rebuild_s: dict[str, float]
    lag: LagResult | None


async def one_run(postgres_url: str, redis_url: str, built: Log, live: list[Item],
                  args: argparse.Namespace) -> RunResult:
    total = len(built.events)
    async with fresh_database(postgres_url) as url:
        load_s = await load_log(url, built)
        log(f"  loaded {total:,} events with COPY + VACUUM ANALYZE in {load_s:.1f} s")
        raw_s = await raw_read(url, total)
        log(f"  raw read, pages of {RAW_PAGE}: {total / raw_s:,.0f} events/s ({raw_s:.2f} s)")
        rebuild_s = await rebuild_all(url, total)
        lag = None
        if args.lag_seconds > 0:
            await flush_redis(redis_url)
            lag = await measure_lag(url, redis_url, live, rate=args.rate,
                                    warmup=args.lag_warmup, seconds=args.lag_seconds,
                                    sample_ms=args.sample_ms)
            _log_lag(lag)
    return RunResult(load_s, raw_s, rebuild_s, lag)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    total = args.events
    started = time.perf_counter()
    built = build_log(take(iter(Workload(seed=1, tag=1)), total))
    live_count = int(args.rate * (args.lag_warmup + args.lag_seconds) * 1.05) + 1000
    live = take(iter(Workload(seed=2, tag=2)), live_count) if args.lag_seconds > 0 else []
    log(f"generated {total:,} events for the log and {len(live):,} for the writer in "
        f"{time.perf_counter() - started:.1f} s; mix: "
        + ", ".join(f"{t} {n / total:.1%}" for t, n in
                    sorted(built.types.items(), key=lambda kv: -kv[1])))
    # The bench holds millions of objects the engine never would (the log's rows): without
    # this, the collector's full passes over them stop the engine's event loop for ~0.5 s.
    gc.collect()
    gc.freeze()
    results: list[RunResult] = []
    # The event loop `spool projections rebuild` and `spool serve` run on (uvloop if installed).
    with services() as svc, asyncio.Runner(loop_factory=_loop_factory()) as runner:
        facts = runner.run(server_facts(svc.postgres_url))
        for run in range(1, args.runs + 1):
            log(f"run {run}/{args.runs}")
            results.append(runner.run(
                one_run(svc.postgres_url, redis_db(svc.redis_url, run), built, live, args)))
    return summarize(args, results, built, facts)


def _log_lag(lag: LagResult) -> None:
    log(f"  lag at {lag.target_eps:,.0f} events/s asked: written {lag.written_eps:,.0f}/s, "
        f"process {lag.process_cores:.2f} cores")
    for name in lag.lag_events:
        e, m = lag.lag_events[name], lag.lag_ms[name]
        log(f"    {name}: lag events p50 {e['p50']:.0f} p99 {e['p99']:.0f} max {e['max']:.0f}; "
            f"ms p50 {m['p50']:.1f} p99 {m['p99']:.1f} max {m['max']:.1f}")


def summarize(args: argparse.Namespace, results: list[RunResult], built: Log,
              facts: dict[str, str]) -> dict[str, Any]:
    total = args.events
    views = list(VIEWS)
    rebuild_eps = {name: median([total / r.rebuild_s[name] for r in results]) for name in views}
    all_eps = median([total / sum(r.rebuild_s.values()) for r in results])
    raw_eps = median([total / r.raw_read_s for r in results])
    out: dict[str, Any] = {
        "bench": "projections",
        "events": total,
        "rebuild_eps": {name: round(eps, 1) for name, eps in rebuild_eps.items()},
        "rebuild_all_views_eps": round(all_eps, 1),
        "raw_read_pages_eps": round(raw_eps, 1),
        "ratio_rebuild_vs_raw_read": {name: round(eps / raw_eps, 3)
                                      for name, eps in rebuild_eps.items()},
        "target_rebuild_eps": TARGET_REBUILD_EPS,
        "target_met": {name: eps >= TARGET_REBUILD_EPS for name, eps in rebuild_eps.items()},
        "load_copy_eps": round(median([total / r.load_s for r in results]), 1),
        "mix": {t: round(n / total, 4) for t, n in sorted(built.types.items(),
                                                          key=lambda kv: -kv[1])},
    }
    lags = [r.lag for r in results if r.lag is not None]
    if lags:
        def med(pick: Callable[[LagResult], float]) -> float:
            return round(median([pick(lag) for lag in lags]), 2)

        names = list(lags[0].lag_events)
        out["lag"] = {
            "target_eps": args.rate,
            "written_eps": med(lambda lag: lag.written_eps),
            "writer_sustained": med(lambda lag: lag.written_eps) >= 0.98 * args.rate,
            "seconds": args.lag_seconds,
            "sample_ms": args.sample_ms,
            "process_cores": med(lambda lag: lag.process_cores),
            "events": {name: {k: med(lambda lag, n=name, k=k: lag.lag_events[n][k])
                              for k in ("p50", "p99", "max")} for name in names},
            "ms": {name: {k: med(lambda lag, n=name, k=k: lag.lag_ms[n][k])
                          for k in ("p50", "p99", "max")} for name in names},
        }
    out["samples"] = {
        "rebuild_eps": {name: [round(total / r.rebuild_s[name], 1) for r in results]
                        for name in views},
        "raw_read_pages_eps": [round(total / r.raw_read_s, 1) for r in results],
        "lag_written_eps": [round(lag.written_eps, 1) for lag in lags],
        "lag_ms_p99": [{n: v["p99"] for n, v in lag.lag_ms.items()} for lag in lags],
        "lag_samples": [lag.samples for lag in lags],
    }
    out["runs"] = args.runs
    out["cpus"] = os.cpu_count()
    out["postgres"] = {k: facts[k] for k in ("server_version", "fsync", "synchronous_commit",
                                             "shared_buffers")}
    return out


def print_table(result: dict[str, Any]) -> None:
    raw = result["raw_read_pages_eps"]
    rows = [["raw asyncpg read, pages of 1000, no decode (limit)", f"{raw:,.0f}", "1.00", "-"]]
    for name, eps in result["rebuild_eps"].items():
        rows.append([f"rebuild {name}", f"{eps:,.0f}", f"{eps / raw:.2f}",
                     "MET" if result["target_met"][name] else "NOT MET"])
    rows.append(["rebuild all views, one after another", f"{result['rebuild_all_views_eps']:,.0f}",
                 f"{result['rebuild_all_views_eps'] / raw:.2f}", "-"])
    log("")
    log(f"rebuild over {result['events']:,} events (medians of {result['runs']} runs; "
        f"target >= {TARGET_REBUILD_EPS:,} events/s per view)")
    log(render_table(["scenario", "events/s", "x raw", "target"], rows))
    lag = result.get("lag")
    if lag:
        log("")
        sustained = "sustained" if lag["writer_sustained"] else "NOT sustained"
        log(f"steady-state lag: {lag['target_eps']:,.0f} events/s asked, "
            f"{lag['written_eps']:,.0f} written ({sustained}), "
            f"engine + writer process {lag['process_cores']:.2f} cores")
        lag_rows = [[name, f"{lag['events'][name]['p50']:.0f}", f"{lag['events'][name]['p99']:.0f}",
                     f"{lag['events'][name]['max']:.0f}", f"{lag['ms'][name]['p50']:.1f}",
                     f"{lag['ms'][name]['p99']:.1f}", f"{lag['ms'][name]['max']:.1f}"]
                    for name in lag["events"]]
        log(render_table(["projection", "events p50", "p99", "max", "ms p50", "p99", "max"],
                         lag_rows))


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    add_options(parser, "runs")
    parser.add_argument("--rate", type=float, default=5000, help="events/s the writer appends")
    parser.add_argument("--lag-seconds", type=float, default=25,
                        help="measured seconds of the lag phase (0: skip it)")
    parser.add_argument("--lag-warmup", type=float, default=3, help="unmeasured seconds first")
    parser.add_argument("--sample-ms", type=float, default=50, help="lag sampling interval")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    raise_fd_limit()
    result = bench(args)
    finish(result, print_table)


if __name__ == "__main__":
    main()
