"""Run one projection: read the log after its checkpoint, apply each page and move the
checkpoint in one transaction (so a crash repeats nothing and skips nothing).

One runner is active per projection across all processes: it holds a session-level advisory lock
on a connection of its own while it runs; the others wait and take over if that connection dies.
A runner wakes when the dispatcher sees new events, and checks the head every ``poll`` seconds
anyway.

Readers that wait for a view to reach a position (read-your-writes) wait on the runner's
``Progress``: the active runner moves it after each commit; a runner on standby reads the
checkpoint the active one (in another process) moves, for as long as anyone here waits. So a
hundred waiting requests cost no query each, and no pool connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import asyncpg

from engine.errors import InvalidRequest, SpoolError, Unavailable
from engine.events import Event
from engine.infra.background import cancel
from engine.infra.db import connection, translate_errors
from engine.log.store import Committed, read_log_page
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("projections")
_PAGE = 1000
# After a page of fewer events than this, a runner that no reader waits on lets the log fill for
# GATHER_SECONDS before it reads the next: a page costs about five round trips whatever its
# size, and under load a runner woken by every commit read pages of a commit or two.
_SMALL_PAGE = 100
# One for every view: the runners share the pages they read (LogPages), so one that gathered
# longer than the others would be handed the short pages they read meanwhile.
GATHER_SECONDS = 0.005


class Projection(Protocol):
    name: str

    def touches(self, event: Event) -> bool:
        """Whether ``apply`` would do anything with ``event`` (a page of nothing it touches
        only moves the checkpoint, in one statement)."""

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool | None:
        """Write the effect of ``events`` (in position order) inside the caller's transaction.
        False when nothing was written (None counts as written)."""


class LogPages:
    """The pages of the log a process's runners read, shared: they are woken by the same
    commits and mostly stand at the same checkpoint, so one reads and decodes a page and the
    others wait for it rather than read it too. A page stays right forever (positions are
    gapless and the log is never rewritten); it may end before what is committed by now, and
    whoever takes it reads the rest next time. Empty pages are not kept, and a page shorter
    than asked is shared only for GATHER_SECONDS after it was read: a runner that comes later
    (a slower view, or one that gathered) reads what was committed since in the same page,
    instead of going through the log in the short pages the quicker ones read."""

    def __init__(self, kept: int = 32) -> None:
        self._kept = kept
        self._pages: OrderedDict[int, asyncio.Future[list[Committed]]] = OrderedDict()
        self._read_at: dict[int, float] = {}  # when each kept page's read ended

    async def read(self, conn: Any, *, after: int, limit: int) -> list[Committed]:
        shared = self._pages.get(after)
        if shared is not None and self._shareable(after, shared, limit):
            page = await _result(shared)
            if page and len(page) <= limit:
                return page
            # Its reader failed, or found nothing: a read planned before the commit that woke
            # this runner (which cleared its wake-up) may end before it, so read for ourselves.
            return await read_log_page(conn, after=after, limit=limit)
        mine: asyncio.Future[list[Committed]] = asyncio.get_running_loop().create_future()
        self._pages[after] = mine
        self._pages.move_to_end(after)
        self._read_at.pop(after, None)
        while len(self._pages) > self._kept:
            oldest, _ = self._pages.popitem(last=False)
            self._read_at.pop(oldest, None)
        try:
            page = await read_log_page(conn, after=after, limit=limit)
        except BaseException:
            self._forget(after, mine)
            mine.cancel()  # those waiting read the page themselves
            raise
        mine.set_result(page)
        if not page:
            self._forget(after, mine)
        elif self._pages.get(after) is mine:
            self._read_at[after] = time.monotonic()
        return page

    def _shareable(self, after: int, shared: asyncio.Future[list[Committed]],
                   limit: int) -> bool:
        """Whether the kept page after ``after`` is still worth taking: being read now, as
        long as asked, or read a moment ago."""
        if not shared.done() or shared.cancelled() or shared.exception() is not None:
            return True  # in flight (or failed: _result tells)
        if len(shared.result()) >= limit:
            return True
        return time.monotonic() - self._read_at.get(after, 0.0) <= GATHER_SECONDS

    def _forget(self, after: int, page: asyncio.Future[list[Committed]]) -> None:
        if self._pages.get(after) is page:
            del self._pages[after]
            self._read_at.pop(after, None)


async def _result(shared: asyncio.Future[list[Committed]]) -> list[Committed] | None:
    """What another runner read; None if its read failed."""
    try:
        return await asyncio.shield(shared)
    except asyncio.CancelledError:
        if not shared.cancelled():
            raise  # this task is being cancelled, not the read
        return None


class Progress:
    """How far one projection has applied the log, as this process knows it, and the readers
    waiting for it to move."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool  # kept: the registry's key is its id
        self.position = 0
        self.waiting = 0
        self.wanted = asyncio.Event()  # set when a reader starts waiting
        self._moved = asyncio.Event()

    def advance(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._moved.set()
            self._moved = asyncio.Event()

    async def wait(self, position: int, seconds: float) -> bool:
        """Whether the projection reaches ``position`` within ``seconds``."""
        deadline = time.monotonic() + seconds
        self.waiting += 1
        self.wanted.set()
        try:
            while self.position < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._moved.wait()
            return True
        finally:
            self.waiting -= 1


# The Progress of each (pool, projection) whose runner runs in this process.
_PROGRESS: weakref.WeakValueDictionary[tuple[int, str], Progress] = (
    weakref.WeakValueDictionary())


def _progress(pool: asyncpg.Pool, name: str) -> Progress:
    found = _PROGRESS.get((id(pool), name))
    if found is None:
        found = _PROGRESS[(id(pool), name)] = Progress(pool)
    return found


class ProjectionRunner:
    def __init__(
        self, pool: asyncpg.Pool, projection: Projection, *, wakeup: asyncio.Event,
        poll: float = 1.0, standby_retry: float = 1.0, follow: float = 0.02,
        on_applied: Callable[[int], None] | None = None, metrics: Metrics | None = None,
        pages: LogPages | None = None,
    ) -> None:
        self._pool = pool
        self._pages = pages or LogPages(kept=1)
        self._metrics = metrics
        self.projection = projection
        self._wakeup = wakeup
        self._poll = poll
        self._standby_retry = standby_retry
        self._follow = follow
        self.progress = _progress(pool, projection.name)
        self._on_applied = on_applied
        self._lock_key = zlib.crc32(f"spool.projection.{projection.name}".encode())
        self.position = 0
        self._behind = False  # the head was past the page this runner applied last
        self.active = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"spool.projection.{self.projection.name}"
        self._task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await self._while_holding_lock(conn)
            except asyncio.CancelledError:
                raise
            except (SpoolError, OSError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:
                log.warning("projection.retry", projection=self.projection.name,
                            error=repr(exc))
            finally:
                self.active = False
                self._report_active(0)
            await self._standby(self._standby_retry)

    async def _standby(self, seconds: float) -> None:
        """Wait ``seconds`` before trying for the lock again, and meanwhile, while readers here
        wait for the view, follow the checkpoint that the active runner moves."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.progress.waiting:
                self.progress.wanted.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self.progress.wanted.wait()
                continue
            with contextlib.suppress(SpoolError):
                async with connection(self._pool, f"following the {self.projection.name} "
                                                  "view") as conn:
                    self.progress.advance(await checkpoint(conn, self.projection.name))
            await asyncio.sleep(min(self._follow, max(left, 0)))

    async def _while_holding_lock(self, conn: Any) -> None:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
            return  # another process runs it; try again later
        try:
            self.active = True
            self._report_active(1)
            await conn.execute(
                "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
                self.projection.name,
            )
            while True:
                self._wakeup.clear()  # before reading: a wake-up during the read is kept
                applied = await self._apply_page(conn)
                if not applied:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll):
                            await self._wakeup.wait()
                elif applied < _SMALL_PAGE and not self._behind and not self.progress.waiting:
                    await self._gather()  # caught up: let the next page fill
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)

    async def _gather(self) -> None:
        """Wait GATHER_SECONDS for more of the log, or less: until a reader waits here."""
        self.progress.wanted.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GATHER_SECONDS):
                await self.progress.wanted.wait()

    async def _apply_page(self, conn: Any) -> int:
        """Apply the next page of the log; how many events it held (0: nothing to apply)."""
        with translate_errors(f"running projection {self.projection.name}"):
            if skipped := await self._skip_page(conn):
                return skipped
            async with conn.transaction():
                position = await conn.fetchval(
                    "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
                    self.projection.name,
                )
                page = await self._pages.read(conn, after=position, limit=_PAGE)
                if not page:
                    self.position = position
                    self.progress.advance(position)  # read as committed
                    self._report_lag(0)
                    return 0
                wrote = await self.projection.apply(conn, page) is not False
                if not wrote:
                    # Only the checkpoint moves: losing this commit in a crash means applying
                    # the same page again to the same no effect, so it need not wait for disk.
                    await conn.execute("SET LOCAL synchronous_commit = off")
                self.position = page[-1][1].position
                head = await conn.fetchval(  # the head for the lag metric, in the same trip
                    "UPDATE projection_checkpoints SET position = $2 WHERE name = $1"
                    " RETURNING (SELECT position FROM log_head WHERE id = 1)",
                    self.projection.name, self.position,
                )
        self.progress.advance(self.position)  # committed: readers woken now see the page
        self._report_lag(max(head - self.position, 0), applied=len(page))
        if wrote and self._on_applied is not None:
            self._on_applied(self.position)
        return len(page)

    async def _skip_page(self, conn: Any) -> int:
        """The next page past the position this runner committed last, if it touches nothing
        of the view: the checkpoint moves over it in one statement, and only from that
        position (a rebuild that moved it meanwhile sends the page the careful way). Like a
        page that wrote nothing, losing it in a crash means reading it again. How many events
        it passed over (0: none, or not this way)."""
        if not self.position:
            return 0
        page = await self._pages.read(conn, after=self.position, limit=_PAGE)
        if not page or any(self.projection.touches(event) for _, event in page):
            return 0
        head = await conn.fetchval(
            "UPDATE projection_checkpoints SET position = $2 WHERE name = $1 AND position = $3"
            " RETURNING (SELECT position FROM log_head WHERE id = 1)",
            self.projection.name, page[-1][1].position, self.position,
        )
        if head is None:
            return 0
        self.position = page[-1][1].position
        self.progress.advance(self.position)
        self._report_lag(max(head - self.position, 0), applied=len(page))
        return len(page)

    def _report_active(self, value: int) -> None:
        if self._metrics is not None:
            self._metrics.projection_active.labels(self.projection.name).set(value)

    def _report_lag(self, lag: int, applied: int = 0) -> None:
        self._behind = lag > 0
        if self._metrics is not None:
            self._metrics.projection_lag.labels(self.projection.name).set(lag)
            self._metrics.projection_events.labels(self.projection.name).inc(applied)


async def checkpoint(conn: Any, name: str) -> int:
    """How far projection ``name`` has applied the log (0 if it never ran)."""
    position = await conn.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = $1", name)
    return int(position or 0)


async def reached(pool: asyncpg.Pool, name: str, position: int, seconds: float, *,
                  conn: Any = None) -> bool:
    """Whether projection ``name`` applies the log up to ``position`` within ``seconds``
    (read-your-writes for a view's readers). Woken by the runner in this process; a process
    without one (a tool, a test) polls the checkpoint instead, on ``conn`` if given."""
    progress = _PROGRESS.get((id(pool), name))
    if progress is not None:
        return await progress.wait(position, seconds)
    deadline = time.monotonic() + seconds
    while True:
        if conn is not None:
            at = await checkpoint(conn, name)
        else:
            async with connection(pool, f"reading the {name} view's position") as own:
                at = await checkpoint(own, name)
        if at >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)


async def require(pool: asyncpg.Pool, name: str, position: int | None, seconds: float, *,
                  field: str = "min_position", conn: Any = None) -> None:
    """Wait until projection ``name`` has applied the log up to ``position`` (nothing to wait
    for when None or 0). A position past the log's head is no write's: InvalidRequest at
    once naming ``field``; after ``seconds``, Unavailable naming it."""
    if not position:
        return
    progress = _PROGRESS.get((id(pool), name))
    if progress is not None and progress.position >= position:
        return
    if conn is not None:
        head = await conn.fetchval("SELECT position FROM log_head WHERE id = 1")
    else:
        async with connection(pool, "reading the log head") as own:
            head = await own.fetchval("SELECT position FROM log_head WHERE id = 1")
    if position > head:
        raise InvalidRequest(f"{field} {position} is past the log's head ({head}): no write "
                             "reported it", field=field)
    if not await reached(pool, name, position, seconds, conn=conn):
        raise Unavailable(f"the {name} view has not reached position {position} yet; try again",
                          retry_after=1, details={"field": field})
