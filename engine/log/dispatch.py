"""Each process reads the fan-out once and dispatches to its local subscribers.

The dispatcher follows the Redis stream from the log head it saw at start. It hands events to
subscribers strictly in position order with no hole: a jump in positions (an entry Redis
refused, a publisher that died) is filled from Postgres first, and when the stream is idle it
checks the Postgres head, so an unpublished tail is delivered within a second. With Redis down
it polls Postgres instead, and goes back to Redis when Redis answers again.

What this process commits is dispatched at once, from the appender, when it continues the
positions dispatched so far (always, with one process): its subscribers need not wait for the
round trip through Redis, and the same events coming back from Redis are passed over by
position. A batch that does not continue them (another process committed in between) waits
for Redis, as everything else does.

Each subscriber has a bounded buffer. One that falls too far behind is cut off (its buffer is
dropped) and resumes from its last id by reconnecting; a slow consumer never grows the server.
Events are handed on as ``LiveEvent``s (engine/log/live.py): decoded and framed once per
process, whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from engine.errors import SpoolError
from engine.log.fanout import LOG_KEY, entry_id, entry_position
from engine.log.live import LiveEvent
from engine.log.store import Committed, EventStore
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("dispatch")


class CutOff(SpoolError):
    """The subscriber fell too far behind; it must reconnect from its last id."""


class Subscription:
    def __init__(
        self, dispatcher: Dispatcher, capacity: int,
        accepts: Callable[[LiveEvent], bool] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._capacity = capacity
        self.accepts = accepts
        self._items: deque[LiveEvent] = deque()
        self._ready = asyncio.Event()
        self._quiet = True  # nothing offered since the last keepalive tick
        self._keepalive_due = False
        self.cut_off = False

    def offer(self, event: LiveEvent) -> None:
        self._quiet = False
        if self.cut_off:
            return
        if len(self._items) >= self._capacity:
            self.cut_off = True
            self._items.clear()  # free the memory now; the client resumes from Postgres
            self._dispatcher.metrics.sse_cut_off.inc()
            # Unsubscribed now, not when its reader next runs: a client that stopped reading
            # blocks its reader in a socket write, maybe for ever.
            self._dispatcher._cut_off.append(self)
        else:
            self._items.append(event)
        self._ready.set()

    def tick(self) -> None:
        """The keepalive ticker: a subscription offered nothing for a whole interval gets an
        empty batch."""
        if self._quiet:
            self._keepalive_due = True
            self._ready.set()
        self._quiet = True

    async def next_batch(self) -> list[LiveEvent]:
        """Every buffered event, waiting for at least one; ``[]`` when a keepalive is due.
        Taking the whole buffer lets a busy reader write many events at once. Raises CutOff."""
        if not self._items and not self.cut_off and not self._keepalive_due:
            self._ready.clear()
            await self._ready.wait()
        if self.cut_off:
            raise CutOff("fell too far behind")
        self._keepalive_due = False
        batch = list(self._items)
        self._items.clear()
        return batch

    def close(self) -> None:
        self._dispatcher.unsubscribe(self)


class Dispatcher:
    def __init__(
        self, client: redis.Redis, store: EventStore, metrics: Metrics,
        *, capacity: int = 1000, keepalive: float = 15.0, poll_interval: float = 0.25,
        idle_check: float = 1.0,
    ) -> None:
        self._redis = client
        self._store = store
        self.metrics = metrics
        self.capacity = capacity
        self._poll_interval = poll_interval
        self._idle_check_ms = int(idle_check * 1000)
        self._by_stream: dict[str, set[Subscription]] = defaultdict(set)
        self._by_tenant: dict[str, set[Subscription]] = defaultdict(set)
        self._keys: dict[Subscription, tuple[dict[str, set[Subscription]], str]] = {}
        self._cut_off: list[Subscription] = []  # cut off during this dispatch: to unsubscribe
        self._last = 0
        self.degraded = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._keepalive = keepalive
        self._ticker: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Event] = []

    async def start(self) -> None:
        self._last = await self._store.head()
        self._store.on_commit(self._committed_here)
        self._task = asyncio.create_task(self._run(), name="spool.dispatcher")
        self._ticker = asyncio.create_task(self._tick(), name="spool.keepalive")

    @property
    def keepalive(self) -> float:
        return self._keepalive

    @keepalive.setter
    def keepalive(self, seconds: float) -> None:
        self._keepalive = seconds
        if self._ticker is not None:  # the next tick comes ``seconds`` from now
            self._ticker.cancel()
            self._ticker = asyncio.create_task(self._tick(), name="spool.keepalive")

    async def _tick(self) -> None:
        """One ticker per process instead of a timer per waiting subscriber (a timer per wait
        cost several percent of the server's CPU when fanning out): a subscriber hears a
        keepalive after one to two intervals of silence, then every interval."""
        while True:
            await asyncio.sleep(self._keepalive)
            for subscription in list(self._keys):
                subscription.tick()

    async def stop(self) -> None:
        self._stopping = True  # redis-py may turn the cancellation of a read into an error
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait([self._task], timeout=0.2)
            if not done:  # a blocked read redis-py did not give up: cut its connection
                await self._redis.connection_pool.disconnect(inuse_connections=True)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def watch(self, moved: asyncio.Event) -> None:
        """Set ``moved`` whenever events are dispatched (the runtime wakes on it)."""
        self._watchers.append(moved)

    # --- subscribers ----------------------------------------------------------------------------

    def subscribe_stream(self, stream_id: str) -> Subscription:
        return self._add(Subscription(self, self.capacity), self._by_stream, stream_id)

    def subscribe_tenant(
        self, tenant_id: str, accepts: Callable[[LiveEvent], bool] | None = None
    ) -> Subscription:
        return self._add(Subscription(self, self.capacity, accepts), self._by_tenant, tenant_id)

    def _add(
        self, subscription: Subscription, index: dict[str, set[Subscription]], key: str
    ) -> Subscription:
        index[key].add(subscription)
        self._keys[subscription] = (index, key)
        self.metrics.sse_subscribers.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        found = self._keys.pop(subscription, None)
        if found is None:
            return
        index, key = found
        index[key].discard(subscription)
        if not index[key]:
            del index[key]
        self.metrics.sse_subscribers.dec()

    @property
    def subscriber_count(self) -> int:
        return len(self._keys)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._follow_redis()
            except (RedisError, OSError) as exc:
                if self._stopping:
                    return
                self.degraded = True
                log.warning("dispatch.redis_down", error=type(exc).__name__)
                await self._poll_postgres_until_redis_returns()
                self.degraded = False
                log.info("dispatch.redis_back")
            except SpoolError as exc:  # Postgres unavailable while filling: retry shortly
                log.warning("dispatch.fill_failed", error=str(exc))
                await asyncio.sleep(self._poll_interval)
            except Exception:  # a bug: keep serving, but with the traceback
                log.exception("dispatch.error")
                await asyncio.sleep(self._poll_interval)

    async def _follow_redis(self) -> None:
        while not self._stopping:
            response: Any = await self._redis.xread(
                {LOG_KEY: entry_id(self._last)}, count=1000, block=self._idle_check_ms
            )
            if not response:
                await self._catch_up()  # idle: is there an unpublished tail?
                continue
            for raw_id, fields in response[0][1]:
                position = entry_position(raw_id)
                if position <= self._last:
                    continue
                if position > self._last + 1:
                    await self._fill(until=position - 1)
                    if position <= self._last:  # the fill reached it already
                        continue
                event, delay = LiveEvent.from_entry(position, fields)
                self.metrics.delivery_seconds.observe(max(delay, 0.0))
                self._dispatch(event)

    async def _poll_postgres_until_redis_returns(self) -> None:
        while not self._stopping:
            with contextlib.suppress(SpoolError):
                await self._catch_up()
            await asyncio.sleep(self._poll_interval)
            try:
                await self._redis.ping()
            except (RedisError, OSError):
                continue
            return

    async def _catch_up(self) -> None:
        head = await self._store.head()
        if head > self._last:
            await self._fill(until=head)

    async def _fill(self, *, until: int) -> None:
        """Dispatch positions (last, until] from Postgres."""
        while self._last < until:
            batch = await self._store.read_log(after=self._last, limit=1000)
            if not batch:
                return
            self.metrics.gaps_filled.inc()
            self._dispatch_all(batch)

    def _committed_here(self, batch: list[Committed]) -> None:
        """The appender's listener: a batch this process committed, dispatched now if it
        continues what was dispatched (else Redis brings it in order with the rest)."""
        if self._stopping or not batch or batch[0].event.position != self._last + 1:
            return
        delay = max(time.time() - batch[-1].event.created_at.timestamp(), 0.0)
        for _ in batch:
            self.metrics.delivery_seconds.observe(delay)
        self._dispatch_all(batch)

    def _dispatch_all(self, batch: Iterable[Committed]) -> None:
        for tenant_id, event in batch:
            if event.position > self._last:  # what was dispatched meanwhile, once only
                self._dispatch(LiveEvent.from_event(tenant_id, event))

    def _dispatch(self, event: LiveEvent) -> None:
        self._last = event.position
        for subscription in self._by_stream.get(event.stream_id, ()):
            subscription.offer(event)
        for subscription in self._by_tenant.get(event.tenant_id, ()):
            if subscription.accepts is None or subscription.accepts(event):
                subscription.offer(event)
        # Watchers (projection runners) after the streams: tasks run in the order they were
        # woken, and a client reading the wire waits on this event while a view can wait.
        for moved in self._watchers:
            moved.set()
        if self._cut_off:  # not while iterating the sets above
            for subscription in self._cut_off:
                self.unsubscribe(subscription)
            self._cut_off.clear()
