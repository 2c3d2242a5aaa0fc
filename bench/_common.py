"""Shared plumbing of the benchmark scripts: the Postgres to measure on, fresh databases, rate
sampling and output (one JSON line on stdout, a human table on stderr).

Postgres is ``SPOOL_DATABASE_URL`` when set, else an embedded one started in a temporary dir
(the same server ``spool serve`` starts) and stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg

# The scripts run as `python bench/NAME.py` from a checkout, installed or not.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.infra.db import schema_sql  # noqa: E402
from engine.infra.embedded import EmbeddedServices  # noqa: E402


@dataclass(frozen=True, slots=True)
class Timing:
    """How long one measurement runs: ``warmup`` seconds unmeasured, then ``seconds`` measured."""

    seconds: float
    warmup: float


class Counter:
    """Completed operations of one measurement (asyncio tasks share one without locking)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


# --- Postgres ------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """The maintenance database URL: SPOOL_DATABASE_URL, or an embedded Postgres for the run."""
    external = os.environ.get("SPOOL_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as data_dir:
        log(f"starting embedded Postgres in {data_dir}")
        with EmbeddedServices(Path(data_dir), postgres=True, redis=False) as services:
            assert services.database_url is not None
            yield services.database_url


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass(frozen=True, slots=True)
class DsnParts:
    """A URL split into the keyword pieces psycopg-style libraries take (host may be a socket
    dir: the embedded Postgres URL carries it as ``?host=/path``)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


def dsn_parts(url: str) -> DsnParts:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return DsnParts(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=parts.path.lstrip("/") or "postgres",
    )


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, *, schema: bool = True) -> AsyncIterator[str]:
    """A new empty database (with schema.sql applied unless told not to), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        if schema:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(schema_sql())
            finally:
                await conn.close()
        yield url
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def server_facts(url: str) -> dict[str, str]:
    """The Postgres settings that decide write throughput, to print beside the figures."""
    conn = await asyncpg.connect(url)
    try:
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                 "max_connections", "shared_buffers")
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await conn.close()


# --- sampling ------------------------------------------------------------------------------------


async def sample_rate(count: Callable[[], int], timing: Timing) -> float:
    """Operations per second of a running workload over ``timing.seconds`` after the warm-up."""
    await asyncio.sleep(timing.warmup)
    start_count, start = count(), time.perf_counter()
    await asyncio.sleep(timing.seconds)
    return (count() - start_count) / (time.perf_counter() - start)


def sample_rate_blocking(count: Callable[[], int], timing: Timing) -> float:
    """``sample_rate`` for workloads running in threads."""
    time.sleep(timing.warmup)
    start_count, start = count(), time.perf_counter()
    time.sleep(timing.seconds)
    return (count() - start_count) / (time.perf_counter() - start)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


# --- output --------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit_json(result: dict[str, Any]) -> None:
    """The one machine-readable line: on stdout, alone, starting with ``{``."""
    print(json.dumps(result, separators=(",", ":")), flush=True)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
