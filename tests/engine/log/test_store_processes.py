"""The race proof DESIGN.md asks for: with concurrent writers in several OS processes, ``position``
is gapless and a reader never sees position N+1 before N.

Several writer processes (this module run with ``python -m``) each open their own EventStore on
one fresh database and run many concurrent writer tasks: appends of 1..3 events to random
streams, some with ``expected_seq`` from a read (tolerating Conflict), some re-sent as retries.
Even-numbered processes contend: they share one small set of streams, and race each other for
the same event ids. Odd-numbered processes write only streams of their own: their transactions
have nothing in common with anyone's but the position counter, so a store that handed out
positions without ordering commits would let them commit out of order (per-stream locking alone
serializes the contended writers and would hide it).

Meanwhile reader tasks in the test process tail ``read_all`` and check every page: it starts right
after the cursor and its positions are contiguous, so no reader ever observes a hole that is later
filled. Afterwards the log is checked against what the writers report they wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Conflict, NotFound
from engine.events import Event, NewEvent, encode
from engine.infra.db import create_pool
from engine.log.store import EventStore

PROCESSES = 4
TASKS = 50  # writer tasks per process
APPENDS = 40  # appends per writer task
STREAMS = 20  # per set: the contended one, and each uncontended process's own
SHARED_IDS = 60  # event ids that every process tries to append; each is written once
READERS = 3
TENANT = "ten_race"
ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 150  # seconds for the writers; far above the expected ~20 s, only against hangs

pytestmark = pytest.mark.slow


# --- the writer process ------------------------------------------------------------------------


def _shared_id(k: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"agentspool-race-{k}")


def _payload(proc: int, task: int, n: int, k: int) -> dict[str, int]:
    return {"proc": proc, "task": task, "n": n, "k": k}


async def _write(dsn: str, proc: int) -> dict[str, Any]:
    """Run TASKS writer tasks of APPENDS appends each; report the ids this process wrote."""
    pool = await create_pool(dsn, size=4)
    store = EventStore(pool)
    store.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    written: list[str] = []
    counts = {"appends": 0, "conflicts": 0, "retries": 0, "shared_lost": 0}

    contended = proc % 2 == 0
    prefix = "s" if contended else f"p{proc}-s"

    async def writer(task: int) -> None:
        rng = random.Random(f"{proc}-{task}")
        for n in range(APPENDS):
            stream = f"{prefix}{rng.randrange(STREAMS)}"
            with_ids = rng.random() < 0.8  # idempotent appends; the rest get ids from the store
            events = [
                NewEvent(
                    type="raced",
                    data=encode(_payload(proc, task, n, k)),
                    id=uuid.uuid4() if with_ids else None,
                )
                for k in range(rng.randint(1, 3))
            ]
            shared = None
            if contended and rng.random() < 0.05:  # processes race for the same event id
                shared = rng.randrange(SHARED_IDS)
                stream = f"shared-{shared}"
                events = [NewEvent(type="raced", data=events[0].data, id=_shared_id(shared))]
                with_ids = True
            expected = None
            if rng.random() < 0.3:
                try:
                    expected = await store.stream_version(stream, tenant_id=TENANT)
                except NotFound:
                    expected = 0
            try:
                stored = await store.append(
                    stream, events, tenant_id=TENANT, stream_type="session", expected_seq=expected
                )
            except Conflict:
                counts["conflicts"] += 1
                continue
            counts["appends"] += 1
            assert all(new.id in (None, e.id) for e, new in zip(stored, events, strict=True))
            mine = [
                json.loads(bytes(e.data)) == json.loads(new.data)
                for e, new in zip(stored, events, strict=True)
            ]
            if all(mine):
                written.extend(str(e.id) for e in stored)
            else:  # another process wrote this shared id first: we got its event back
                assert shared is not None and not any(mine)
                counts["shared_lost"] += 1
            if with_ids and rng.random() < 0.1:  # a retry: the stored events, nothing written
                again = await store.append(
                    stream, events, tenant_id=TENANT, stream_type="session", expected_seq=0
                )
                assert [(e.id, e.seq, e.position) for e in again] == [
                    (e.id, e.seq, e.position) for e in stored
                ]
                counts["retries"] += 1

    try:
        await asyncio.gather(*(writer(task) for task in range(TASKS)))
    finally:
        await store.stop()
        await pool.close()
    return {"proc": proc, "written": written, **counts}


def main() -> None:
    dsn, proc = sys.argv[1], int(sys.argv[2])
    report = asyncio.run(_write(dsn, proc))
    print("report " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()


# --- the test ------------------------------------------------------------------------------------


@dataclass
class Reader:
    cursor: int = 0
    pages: int = 0
    events: int = 0
    caught_up: int = 0  # empty reads while the writers were still writing: at the frontier


async def _tail(store: EventStore, reader: Reader, done: asyncio.Event, seed: int) -> None:
    """Tail read_all in a tight loop; every page must continue exactly where the last one ended.

    After the writers are done, read on until a read comes back empty, so the reader ends at the
    head."""
    rng = random.Random(seed)
    while True:
        finished = done.is_set()
        page = await store.read_all(after=reader.cursor, limit=rng.choice((1, 7, 50, 500)))
        if page:
            positions = [e.position for e in page]
            expected = list(range(reader.cursor + 1, reader.cursor + len(page) + 1))
            assert positions == expected, (
                f"reader at {reader.cursor} saw {positions[:10]}...: a hole it would skip"
            )
            reader.cursor = positions[-1]
            reader.pages += 1
            reader.events += len(page)
        elif finished:
            return
        else:
            reader.caught_up += 1
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _writers(database_url: str) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start the writer processes; kill whatever is still running on the way out."""
    processes: list[asyncio.subprocess.Process] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for proc in range(PROCESSES):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "tests.engine.log.test_store_processes",
                    database_url, str(proc),
                    cwd=ROOT, env=env,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()


async def _report(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    out = await process.stdout.read()
    code = await process.wait()
    assert code == 0, f"a writer process failed (exit {code}); its stderr is above"
    [line] = [line for line in out.decode().splitlines() if line.startswith("report ")]
    report: dict[str, Any] = json.loads(line.removeprefix("report "))
    return report


async def _read_all(store: EventStore) -> list[Event]:
    events: list[Event] = []
    while page := await store.read_all(after=events[-1].position if events else 0, limit=1000):
        events.extend(page)
    return events


async def _read_stream(store: EventStore, stream: str) -> list[Event]:
    events: list[Event] = []
    while page := await store.read_stream(
        stream, tenant_id=TENANT, after=events[-1].seq if events else 0, limit=1000
    ):
        events.extend(page)
    return events


async def test_position_is_gapless_and_readers_never_see_a_hole(database_url: str) -> None:
    pool = await create_pool(database_url, size=READERS + 1)
    store = EventStore(pool)  # reads only: no appender needed
    readers = [Reader() for _ in range(READERS)]
    done = asyncio.Event()
    try:
        async with _writers(database_url) as processes:
            for process in processes:  # each writer has its pool and appender up
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 30)
                assert line == b"ready\n", line
            tails = [
                asyncio.create_task(_tail(store, reader, done, seed))
                for seed, reader in enumerate(readers)
            ]
            for process in processes:
                assert process.stdin is not None
                process.stdin.write(b"go\n")
                await process.stdin.drain()
            try:
                reports = await asyncio.wait_for(
                    asyncio.gather(*(_report(process) for process in processes)), TIMEOUT
                )
                assert all(not tail.done() for tail in tails), "a reader stopped early"
            finally:
                done.set()
                await asyncio.gather(*tails)  # re-raises a reader's failed assertion

        log = await _read_all(store)
        head = await store.head()
        streams = {
            stream: await _read_stream(store, stream) for stream in {e.stream_id for e in log}
        }
    finally:
        await pool.close()

    written = [event_id for report in reports for event_id in report["written"]]
    total = len(written)
    # Every writer did real work, and the races actually happened.
    assert all(report["appends"] > 0 and report["conflicts"] > 0 for report in reports), reports
    assert all(report["retries"] > 0 for report in reports), reports
    assert sum(report["shared_lost"] for report in reports) > 0, reports
    # The log is exactly positions 1..N, N is what the writers reported writing, ids are unique
    # and are exactly the ids the writers wrote.
    assert [e.position for e in log] == list(range(1, total + 1))
    assert head == total
    assert len({e.id for e in log}) == total
    assert {e.id for e in log} == {uuid.UUID(event_id) for event_id in written}
    # Each stream's seq is 1..k in position order, and read_stream is its slice of read_all.
    for stream, events in streams.items():
        assert events == [e for e in log if e.stream_id == stream], stream
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), stream
    # Each shared id was written exactly once, whoever won.
    shared = [e for e in log if e.stream_id.startswith("shared-")]
    assert len({e.id for e in shared}) == len(shared)
    assert all(e.seq == 1 for e in shared)
    # Every reader followed the log to its end, page by page, and was really racing the writers.
    for reader in readers:
        assert reader.cursor == total and reader.events == total
        assert reader.pages > 10 and reader.caught_up > 0, readers
