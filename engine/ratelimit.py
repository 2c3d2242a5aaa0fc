"""Rate limits: turn submissions (``POST /v1/sessions/{id}/messages``) per tenant per minute,
counted in Redis so every process shares one count (a fixed window per clock minute: ``INCR``
then ``EXPIRE``, one round trip).

Budgets bound what a tenant spends; this bounds how fast it can ask, so one tenant cannot fill
the workers' queue for everyone. If Redis cannot be reached the request goes through (logged):
losing the limiter for a while must not stop the service, and budgets still hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from engine.errors import RateLimited
from engine.logging import get_logger

log = get_logger("ratelimit")
_WINDOW = 60


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

    async def take(self, tenant_id: str) -> Allowance | None:
        """Count one request of ``tenant_id``; RateLimited (429, Retry-After and the
        X-RateLimit headers) past the limit. None when there is no limit (0), or no Redis."""
        if self.per_minute <= 0:
            return None
        now = time.time()
        key = f"spool:{{log}}:rate:{tenant_id}:{int(now // _WINDOW)}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 2 * _WINDOW)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("ratelimit.unavailable", error=repr(exc))
            return None
        allowance = Allowance(self.per_minute, max(self.per_minute - int(count), 0),
                              _WINDOW - int(now % _WINDOW))
        if int(count) > self.per_minute:
            raise RateLimited(
                f"this tenant may submit {self.per_minute} messages a minute; try again in "
                f"{allowance.reset} s", retry_after=allowance.reset, headers=allowance.headers())
        return allowance
