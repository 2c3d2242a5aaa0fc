"""engine/db.py: driver errors become SpoolErrors, and a failed release never hides a result."""

from __future__ import annotations

import asyncpg
import pytest
from structlog.testing import capture_logs

from engine.db import connection, translate_errors
from engine.errors import InvalidRequest


async def _failing_reset(conn: asyncpg.Connection) -> None:
    raise ConnectionResetError("reset failed")


async def test_a_failed_release_after_the_body_returns_the_result(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=_failing_reset)
    try:
        with capture_logs() as logs:
            async with connection(pool, "testing") as conn:
                result = await conn.fetchval("SELECT 41 + 1")
        assert result == 42
        assert [entry["event"] for entry in logs] == ["db.release_failed"]
        async with connection(pool, "testing again") as conn:  # the pool replaced it
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        pool.terminate()


async def test_a_data_exception_is_an_invalid_request(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(InvalidRequest), translate_errors("testing"):
            await conn.fetchval("SELECT $1::text::int", "not a number")  # 22P02
    finally:
        await conn.close()
