"""Publishing committed events to Redis Streams, and the relay that republishes what a process
left unpublished (it died between commit and publish, or Redis was down).

One stream holds the live tail of the whole log: ``spool:{log}:events`` (the hash tag keeps
every key of ours in one Redis Cluster slot). Entry ids are ``<position>-0``, so publishing the
same event twice is refused by Redis ("ID equal or smaller"), which makes republishing
idempotent. Entries can be published out of order by different processes, and an entry older
than the stream's last one is refused: subscribers see the hole in positions and fill it from
Postgres. Redis is only the fast path; Postgres stays the truth. The stream is trimmed
(``MAXLEN ~``): it is a live tail, not storage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from engine.log.store import Committed, EventStore
from engine.logging import get_logger
from engine.metrics import Metrics

LOG_KEY = "spool:{log}:events"
TAIL_MAXLEN = 100_000
_RELAY_BATCH = 1000
# The relay republishes at most this much of the log's end: after Redis lost its data the
# stream is empty and everything would look unpublished, but subscribers fill from Postgres.
_RELAY_WINDOW = 10_000

log = get_logger("fanout")
_encoder = msgspec.json.Encoder()


def entry_id(position: int) -> str:
    return f"{position}-0"


def entry_position(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[0])


class Publisher:
    """Publishes each committed batch (in commit order, off the append path) and relays."""

    def __init__(
        self, client: redis.Redis, store: EventStore, metrics: Metrics,
        *, relay_interval: float = 1.0,
    ) -> None:
        self._redis = client
        self._store = store
        self._metrics = metrics
        self._relay_interval = relay_interval
        self._pending: deque[list[Committed]] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._store.on_commit(self._committed)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="spool.publisher"),
            asyncio.create_task(self._relay_loop(), name="spool.relay"),
        ]

    async def stop(self) -> None:
        """Publish what is pending, then stop (the loops end by themselves; whatever is still
        unpublished after 2 s is left to the next relay and to the subscribers' gap filling)."""
        self._stopping.set()
        self._wakeup.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=2)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _committed(self, batch: list[Committed]) -> None:
        self._pending.append(batch)
        self._wakeup.set()

    async def _publish_loop(self) -> None:
        while not (self._stopping.is_set() and not self._pending):
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                await self.publish(self._pending.popleft())

    async def publish(self, batch: list[Committed]) -> int:
        """XADD each event; returns how many were new to the stream. Never raises: an event
        Redis did not take is left to the relay and to the subscribers' gap filling."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for tenant_id, event in batch:
                    pipe.xadd(
                        LOG_KEY, {"t": tenant_id, "e": _encoder.encode(event)},
                        id=entry_id(event.position), maxlen=TAIL_MAXLEN, approximate=True,
                    )
                results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._metrics.publish_failures.inc(len(batch))
            log.warning("fanout.publish_failed", events=len(batch), error=type(exc).__name__)
            return 0
        published = sum(1 for result in results if not isinstance(result, ResponseError))
        self._metrics.events_published.inc(published)
        return published

    async def _relay_loop(self) -> None:
        """Publish what the log has and the stream lacks, once it has lacked it for a whole
        interval (so the relay does not race the normal publisher)."""
        behind_since: int | None = None
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._relay_interval):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                published = await self._last_published()
                head = await self._store.head()
            except Exception as exc:  # Redis or Postgres down: try again next interval
                log.debug("fanout.relay_skipped", error=type(exc).__name__)
                continue
            if head <= published:
                behind_since = None
            elif behind_since is None or behind_since < published:
                behind_since = published  # first seen behind: give the publisher one interval
            else:
                await self.relay(after=max(published, head - _RELAY_WINDOW), until=head)
                behind_since = None

    async def relay(self, *, after: int, until: int) -> int:
        relayed = 0
        while after < until:
            batch = await self._store.read_log(after=after, limit=_RELAY_BATCH)
            if not batch:
                break
            relayed += await self.publish(batch)
            after = batch[-1][1].position
        if relayed:
            self._metrics.events_relayed.inc(relayed)
            log.info("fanout.relayed", events=relayed, until=until)
        return relayed

    async def _last_published(self) -> int:
        last: Any = await self._redis.xrevrange(LOG_KEY, count=1)
        return entry_position(last[0][0]) if last else 0
