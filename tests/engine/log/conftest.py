from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(redis_url)
    yield client
    await client.aclose()
