"""`spool projections verify|rebuild` as a subprocess against the test database."""

from __future__ import annotations

import asyncio
import subprocess

from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import caught_up, new_board, new_task
from tests.helpers_processes import spool_cli


def _spool(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return spool_cli("projections", *args, database_url=database_url, timeout=120)


async def test_verify_finds_drift_and_rebuild_repairs_it(api: Api, settings: Settings) -> None:
    assert settings.database_url is not None
    url = settings.database_url
    key = await api.key(await api.tenant(), "member")
    task = await new_task(api, key, await new_board(api, key), title="kept")
    await caught_up(api, "tasks")

    clean = await asyncio.to_thread(_spool, "verify", database_url=url)
    assert clean.returncode == 0, clean.stderr
    assert "tasks: clean at position" in clean.stdout and "approvals: clean" in clean.stdout
    assert "agents: clean" in clean.stdout

    async with api.app.state.engine._pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET priority = 'low' WHERE task_id = $1", task["id"])
    drift = await asyncio.to_thread(_spool, "verify", "tasks", database_url=url)
    assert drift.returncode == 1
    assert "tasks: DRIFT" in drift.stdout and '"priority": "low"' in drift.stdout
    assert "only in a rebuild from the log" in drift.stdout

    rebuilt = await asyncio.to_thread(_spool, "rebuild", "tasks", database_url=url)
    assert rebuilt.returncode == 0 and "rebuilt from position 0" in rebuilt.stdout
    again = await asyncio.to_thread(_spool, "verify", "tasks", database_url=url)
    assert again.returncode == 0, again.stdout

    unknown = await asyncio.to_thread(_spool, "rebuild", "nope", database_url=url)
    assert unknown.returncode == 2 and "no projection 'nope'" in unknown.stderr
