"""Postgres plumbing: the pool, the json codec, the schema, and driver-error translation."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from engine.errors import Conflict, InvalidRequest, SpoolError, Unavailable
from engine.logging import get_logger
from engine.pages import Page, page_of

log = get_logger("engine.infra.db")

T = TypeVar("T")

# Apply the schema under one advisory lock so processes starting together do not race.
_SCHEMA_LOCK = 0x5B001


def schema_sql() -> str:
    """schema.sql: inside the wheel as engine/schema.sql, at the repo root in a checkout."""
    packaged = resources.files("engine").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text()


async def init_connection(conn: asyncpg.Connection) -> None:
    # json as bytes in both directions: stored JSON reaches clients without a str round trip.
    await conn.set_type_codec(
        "json", schema="pg_catalog", format="binary", encoder=bytes, decoder=bytes
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections are not reset with a query (asyncpg's default: a round trip per
    release). asyncpg still rolls back an open transaction; nothing of ours leaves other
    session state behind (no LISTEN, no SET, advisory locks unlocked where taken)."""


async def create_pool(dsn: str, *, size: int) -> asyncpg.Pool:
    with translate_errors("connecting to Postgres"):
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, init=init_connection, reset=_keep_session,
            command_timeout=60,
        )
    assert pool is not None
    return pool


async def apply_schema(pool: asyncpg.Pool) -> None:
    """Apply schema.sql unless this very text was applied before. Even when it changes nothing,
    the script locks tables (``CREATE INDEX IF NOT EXISTS`` a share lock, ``ALTER TABLE`` an
    exclusive one) in one transaction, which deadlocks with a running process's writes."""
    sql = schema_sql()
    digest = hashlib.sha256(sql.encode()).hexdigest()
    with translate_errors("applying schema.sql"):
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _SCHEMA_LOCK)
            try:
                if not await _applied(conn, digest):
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_applied (digest) VALUES ($1) ON CONFLICT DO NOTHING",
                        digest,
                    )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SCHEMA_LOCK)


async def _applied(conn: asyncpg.Connection, digest: str) -> bool:
    if await conn.fetchval("SELECT to_regclass('schema_applied')") is None:
        return False
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM schema_applied WHERE digest = $1)", digest))


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # asyncpg's protocol state machine on a connection the server just cut: the connection is
    # broken (the pool replaces it on release), the request can be retried.
    asyncpg.InternalClientError,
)




def _connection_lost(exc: BaseException) -> bool:
    """Whether a driver error means "no usable connection" (retry elsewhere or later).

    A plain ``InterfaceError`` is asyncpg's "connection is closed" / "pool is closing". Its
    subclasses are not: ``ClientConfigurationError`` (a bad DSN option), the unsupported-feature
    errors and ``exceptions._base.DataError`` are configuration or programming mistakes that a
    retry repeats; so the exact class is compared, not isinstance. (An argument asyncpg cannot
    encode is raised as ``asyncpg.DataError``, SQLSTATE 22000: a data exception, below.)"""
    return type(exc) is asyncpg.InterfaceError or isinstance(exc, _CONNECTION_ERRORS)


# SQLSTATE classes that say "the server cannot serve you now", not "your statement is wrong":
# connection exception, insufficient resources, operator intervention (shutdown, restart).
_UNAVAILABLE_CLASSES = ("08", "53", "57P")
# SQLSTATE class 22, data exception: a value Postgres will not take (NUL in text, out of range).
_DATA_EXCEPTION = "22"


@contextlib.contextmanager
def translate_errors(doing: str) -> Iterator[None]:
    """Re-raise driver errors as SpoolErrors: connection trouble -> Unavailable (retryable),
    unique violations -> Conflict, data exceptions -> InvalidRequest, anything else from
    Postgres or the driver (a value asyncpg cannot encode, a misconfigured client) ->
    SpoolError, an internal_error whose cause is logged: not retryable, since it is our defect."""
    try:
        yield
    except SpoolError:
        raise
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"{doing}: duplicate ({exc.constraint_name})") from exc
    except (asyncpg.InterfaceError, *_CONNECTION_ERRORS) as exc:
        if _connection_lost(exc):
            raise Unavailable(f"Postgres unavailable while {doing}", retry_after=1) from exc
        # The driver's own words (no values or secrets in them) help the operator; an HTTP
        # client sees only "internal error".
        raise SpoolError(f"database driver error while {doing}: "
                         f"{type(exc).__name__}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        if (exc.sqlstate or "").startswith(_UNAVAILABLE_CLASSES):
            raise Unavailable(f"Postgres unavailable while {doing}", retry_after=1) from exc
        if (exc.sqlstate or "").startswith(_DATA_EXCEPTION):
            raise InvalidRequest(f"a value was refused while {doing}: {exc.sqlstate}") from exc
        raise SpoolError(f"database error while {doing}: {exc.sqlstate}") from exc


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool, doing: str) -> AsyncIterator[Any]:
    """Acquire a connection with errors translated. Whatever stops a connection from being had
    (refused, database closed to connections, too many clients) is Unavailable.

    Only acquire and the body decide the outcome: a failed release (the connection's reset) is
    logged and swallowed, since the body's work is done (an append may have committed: reporting
    Unavailable would invite a retry that writes twice) and asyncpg terminates that connection."""
    with translate_errors(doing):
        try:
            conn = await pool.acquire()
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise Unavailable(f"Postgres unavailable while {doing}", retry_after=1) from exc
        try:
            yield conn
        finally:
            await _release(pool, conn, doing)


async def fetch_page(pool: asyncpg.Pool, doing: str, sql: str, *args: Any, after: str | None,
                     limit: int, item: Callable[[Any], T], cursor: Callable[[T], str]) -> Page[T]:
    """A page of ``item`` of each row of ``sql``, which takes ``args``, then the cursor
    (``after``, "" for the start) and ``limit + 1`` as its last two parameters: the extra row
    only says there is more."""
    async with connection(pool, doing) as conn:
        rows = await conn.fetch(sql, *args, after or "", limit + 1)
    return page_of([item(row) for row in rows], limit, cursor)


async def _release(pool: asyncpg.Pool, conn: Any, doing: str) -> None:
    try:
        await pool.release(conn)
    except Exception as exc:  # logged, not raised: the caller's outcome stands
        log.warning("db.release_failed", doing=doing, error=repr(exc))
