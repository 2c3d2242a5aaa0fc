"""Rate limits: turn submissions (``POST /v1/sessions/{id}/messages``) per tenant per minute,
counted in Redis so every process shares one count (a fixed window per clock minute: ``INCRBY``
then ``EXPIRE``, one round trip). The requests of a tenant that arrive while its round trip is
out share the next one (``INCRBY n``; each gets its own place in the count), so a burst costs
Redis one call per round trip, not one per request.

Budgets bound what a tenant spends; this bounds how fast it can ask, so one tenant cannot fill
the workers' queue for everyone. If Redis refuses or does not answer within 0.25 s, the request
goes through (logged) and the limiter rests for 5 s: losing it for a while must not stop or
slow the service, and budgets still hold.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from engine.errors import RateLimited
from engine.logging import get_logger

log = get_logger("ratelimit")
_WINDOW = 60
_REDIS_SECONDS = 0.25  # at most this long waiting for Redis per request
_SKIP_SECONDS = 5.0  # then this long without asking it


@dataclass(frozen=True)
class Allowance:
    limit: int
    remaining: int
    reset: int  # seconds until the window starts over

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


class RateLimiter:
    def __init__(self, client: redis.Redis, per_minute: int) -> None:
        self._redis = client
        self.per_minute = per_minute
        self._skip_until = 0.0
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}  # key -> the next round trip
        self._senders: dict[str, asyncio.Task[None]] = {}  # key -> its round trips' task

    async def take(self, tenant_id: str) -> Allowance | None:
        """Count one request of ``tenant_id``; RateLimited (with retry_after and the
        X-RateLimit headers) past the limit. None when there is no limit (0), or no Redis."""
        if self.per_minute <= 0:
            return None
        now = time.time()
        key = f"spool:{{log}}:rate:{tenant_id}:{int(now // _WINDOW)}"
        if time.monotonic() < self._skip_until:
            return None
        try:
            count = await self._count(key)
        except (RedisError, OSError, TimeoutError) as exc:
            # A Redis that refuses or hangs: let requests through, and do not ask it again
            # for a while (each request would wait for it).
            self._skip_until = time.monotonic() + _SKIP_SECONDS
            log.warning("ratelimit.unavailable", error=repr(exc), skip_seconds=_SKIP_SECONDS)
            return None
        allowance = Allowance(self.per_minute, max(self.per_minute - int(count), 0),
                              _WINDOW - int(now % _WINDOW))
        if int(count) > self.per_minute:
            raise RateLimited(
                f"this tenant may submit {self.per_minute} messages a minute; try again in "
                f"{allowance.reset} s", retry_after=allowance.reset, headers=allowance.headers())
        return allowance

    async def _count(self, key: str) -> int:
        """This request's place in the window's count, from the next round trip for ``key``."""
        place: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(place)
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send(key))
        return await place

    async def _send(self, key: str) -> None:
        """Round trips for ``key`` until nobody waits: each counts everyone queued meanwhile."""
        places: list[asyncio.Future[int]] = []
        try:
            while places := self._waiting.pop(key, []):
                try:
                    async with asyncio.timeout(_REDIS_SECONDS):
                        async with self._redis.pipeline(transaction=False) as pipe:
                            pipe.incrby(key, len(places))
                            pipe.expire(key, 2 * _WINDOW)
                            total, _ = await pipe.execute()
                except (RedisError, OSError, TimeoutError) as exc:
                    for place in places:
                        if not place.done():
                            place.set_exception(exc)
                    continue
                first = int(total) - len(places)
                for index, place in enumerate(places):
                    if not place.done():  # a caller that gave up was counted all the same
                        place.set_result(first + index + 1)
        finally:  # cancelled (the process stops): nobody waits for ever
            del self._senders[key]
            for place in [*places, *self._waiting.pop(key, [])]:
                place.cancel()
