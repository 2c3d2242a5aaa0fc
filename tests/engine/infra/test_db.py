"""engine/infra/db.py: driver errors become SpoolErrors, and a failed release never hides a
result."""

from __future__ import annotations

import asyncio

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest
from structlog.testing import capture_logs

from api.errors import status_of
from engine.errors import InvalidRequest, SpoolError, Unavailable
from engine.infra.db import apply_schema, connection, create_pool, translate_errors


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



async def test_a_bad_client_option_is_an_internal_error_not_a_retry(database_url: str) -> None:
    """ClientConfigurationError subclasses InterfaceError: it is a mistake in the DSN, not a
    lost connection, so no 503 with Retry-After (retrying repeats it)."""
    separator = "&" if "?" in database_url else "?"
    with pytest.raises(SpoolError) as raised:
        await create_pool(f"{database_url}{separator}sslmode=bogus", size=2)
    assert type(raised.value.__cause__) is asyncpg.ClientConfigurationError
    assert not isinstance(raised.value, Unavailable)
    assert status_of(raised.value) == 500
    assert "sslmode" in raised.value.message  # the operator is told what is wrong


@pytest.mark.parametrize("error", [
    asyncpg_base.DataError, asyncpg.UnsupportedClientFeatureError,
    asyncpg.UnsupportedServerFeatureError,
])
def test_no_subclass_of_interface_error_is_retryable(error: type[Exception]) -> None:
    """The rest of InterfaceError's subclasses, which asyncpg raises on paths a test cannot
    reach cheaply (constructed here; the class is all that decides)."""
    with pytest.raises(SpoolError) as raised, translate_errors("testing"):
        raise error("a driver mistake")
    assert status_of(raised.value) == 500
    assert getattr(raised.value, "retry_after", None) is None


async def test_an_argument_of_the_wrong_type_is_refused_not_retried(database_url: str) -> None:
    """asyncpg raises it as asyncpg.DataError, SQLSTATE 22000 (a PostgresError): a data
    exception, 400, never a retryable 503."""
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(InvalidRequest) as raised, translate_errors("testing"):
            await conn.fetchval("SELECT $1::int", "not an int")  # encoded client-side
        assert isinstance(raised.value.__cause__, asyncpg.DataError)
        assert "not an int" not in raised.value.message  # no input quoted back
        assert await conn.fetchval("SELECT 1") == 1  # and the connection is fine
    finally:
        await conn.close()


async def test_a_closed_connection_is_unavailable(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.close()
    with pytest.raises(Unavailable) as raised, translate_errors("testing"):
        await conn.fetchval("SELECT 1")
    assert type(raised.value.__cause__) is asyncpg.InterfaceError  # "connection is closed"


async def test_a_second_start_applies_no_schema_while_another_process_writes(
    database_url: str,
) -> None:
    """schema.sql's statements lock tables even when they change nothing, so a second process
    starting beside a running one could deadlock with its writes (seen in
    test_the_cap_holds_across_worker_processes_sharing_a_database): once applied, the same text
    is not run again."""
    pool = await create_pool(database_url, size=2)
    writer = await asyncpg.connect(database_url)
    try:
        await apply_schema(pool)
        async with writer.transaction():  # a running worker's claim, not yet committed
            await writer.execute("UPDATE session_runs SET tries = tries WHERE false")
            # Before, this waited for the writer's lock (ALTER TABLE session_runs) for ever.
            await asyncio.wait_for(apply_schema(pool), timeout=60)
        async with connection(pool, "testing") as conn:
            assert await conn.fetchval("SELECT count(*) FROM schema_applied") == 1
    finally:
        await writer.close()
        await pool.close()
