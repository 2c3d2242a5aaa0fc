from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.infra.db import create_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's fresh database."""
    pool = await create_pool(database_url, size=2)
    yield pool
    await pool.close()
