"""The rate limiter's count in Redis (engine/infra/ratelimit.py): requests that arrive together
share round trips, and each still gets its own place in the count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from engine.errors import RateLimited
from engine.infra.ratelimit import Allowance, RateLimiter

LIMIT = 50
BURST = 80


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _incrby_calls(client: redis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_incrby", {}).get("calls", 0))


async def _counted(client: redis.Redis, tenant_id: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"spool:{{log}}:rate:{tenant_id}:*")]
    return sum([int(await client.get(key) or 0) for key in keys])


async def test_a_burst_shares_round_trips_and_each_request_gets_its_own_place(
        client: redis.Redis) -> None:
    limiter = RateLimiter(client, LIMIT)
    calls_before = await _incrby_calls(client)
    outcomes = await asyncio.gather(*(limiter.take("ten_a") for _ in range(BURST)),
                                    return_exceptions=True)
    allowed = [o for o in outcomes if isinstance(o, Allowance)]
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(allowed) == LIMIT and len(refused) == BURST - LIMIT
    assert sorted(a.remaining for a in allowed) == list(range(LIMIT))  # one place each
    assert await _counted(client, "ten_a") == BURST
    # Queued together, counted together (two keys only if a clock minute turned meanwhile).
    assert await _incrby_calls(client) - calls_before <= 2


async def test_tenants_are_counted_apart_and_later_requests_continue_the_count(
        client: redis.Redis) -> None:
    limiter = RateLimiter(client, LIMIT)
    await asyncio.gather(*(limiter.take("ten_a") for _ in range(10)))
    other = await limiter.take("ten_b")
    assert other is not None and other.remaining == LIMIT - 1
    later = await limiter.take("ten_a")
    assert later is not None and later.remaining in (LIMIT - 11, LIMIT - 1)  # or a new minute
    assert await _counted(client, "ten_a") == 11


async def test_a_caller_that_gives_up_is_counted_and_the_others_are_answered(
        client: redis.Redis) -> None:
    limiter = RateLimiter(client, LIMIT)
    quitter = asyncio.ensure_future(limiter.take("ten_a"))
    stayers = [asyncio.ensure_future(limiter.take("ten_a")) for _ in range(3)]
    await asyncio.sleep(0)  # every take queued
    quitter.cancel()
    answered = await asyncio.gather(*stayers)
    assert all(isinstance(a, Allowance) for a in answered)
    assert await _counted(client, "ten_a") == 4
