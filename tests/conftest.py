"""Real Postgres and Redis for every test: the embedded ones (started once per test session in a
temporary data dir, exactly as ``spool serve`` does), or external ones when SPOOL_DATABASE_URL and
SPOOL_REDIS_URL are set. Each test gets a fresh database cloned from a migrated template."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from engine.engine import Engine
from engine.infra.db import schema_sql
from engine.infra.embedded import EmbeddedServices
from engine.log.store import EventStore
from engine.settings import Settings
from tests.helpers import store_on, with_database

ADMIN_TOKEN = "spa_test-admin-token-0123456789"
TEMPLATE = "spool_test_template"


class Services:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url  # the maintenance database
        self.redis_url = redis_url

    async def fresh_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await conn.close()
        return with_database(self.database_url, name)


async def _make_template(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(url, TEMPLATE))
    try:
        await conn.execute(schema_sql())
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    database_url = os.environ.get("SPOOL_DATABASE_URL")
    redis_url = os.environ.get("SPOOL_REDIS_URL")
    embedded = None
    # Not under pytest's tmp_path: a new pytest session resets /tmp/pytest-of-<user> to 0700,
    # and as root the embedded Postgres runs as another user that must traverse the path.
    data_dir = Path(tempfile.mkdtemp(prefix="spool-test-"))
    if not (database_url and redis_url):
        embedded = EmbeddedServices(
            data_dir / "data",
            postgres=not database_url,
            redis=not redis_url,
        )
        embedded.start()
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    assert database_url and redis_url
    asyncio.run(_make_template(database_url))
    try:
        yield Services(database_url, redis_url)
    finally:
        if embedded is not None:
            embedded.discard()
        # Hundreds of test databases, gigabytes: removed by a process of its own, which the
        # end of the run does not wait for.
        subprocess.Popen(["rm", "-rf", "--", str(data_dir)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
async def database_url(services: Services) -> str:
    return await services.fresh_database()


@pytest.fixture
async def redis_url(services: Services) -> AsyncIterator[str]:
    client = redis.from_url(services.redis_url)
    await client.flushdb()
    await client.aclose()
    yield services.redis_url


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
async def own_store(database_url: str) -> AsyncIterator[EventStore]:
    """An appender of its own on the test database, with no publisher: another process's."""
    async with store_on(database_url, 4, EventStore) as store:
        yield store


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(settings) as running:
        yield running


# --- the end of the test process --------------------------------------------------------------
# After every test has passed, the interpreter's own teardown (finalizing what C extensions left
# for garbage) crashed now and then with SIGSEGV inside libpython (twice in a dozen full runs,
# always after pytest's summary, never inside a test), which turned a green run red. Nothing of
# ours runs then: the services were stopped by the session fixture. So the process ends with
# pytest's own exit status once pytest is done, without that teardown.
_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status is not None and os.environ.get("SPOOL_TEST_FULL_TEARDOWN") != "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
