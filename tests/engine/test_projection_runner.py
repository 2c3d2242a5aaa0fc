"""The projection runner: one active runner per projection across engines, checkpoints that
follow the log, and the lag / rate / active metrics."""

from __future__ import annotations

import asyncio

from engine.engine import Engine
from engine.events import NewEvent
from engine.settings import Settings


def _metric(engine: Engine, name: str, projection: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, {"projection": projection})
    return 0.0 if value is None else float(value)


async def _checkpoint(engine: Engine, name: str) -> int:
    async with engine._pool.acquire() as conn:  # type: ignore[union-attr]
        return int(await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", name) or 0)


async def test_one_engine_runs_each_projection_and_reports_its_lag(
    engine: Engine, settings: Settings,
) -> None:
    events = [NewEvent(type="thing_happened", data=b"{}") for _ in range(30)]
    await engine.store.append("s1", events, tenant_id="ten_a", stream_type="session")
    head = await engine.store.head()
    async with asyncio.timeout(10):
        while await _checkpoint(engine, "session_runs") < head:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert _metric(engine, "spool_projection_active", "session_runs") == 1
    assert _metric(engine, "spool_projection_lag_events", "session_runs") == 0
    assert _metric(engine, "spool_projection_events_total", "session_runs") >= 30

    async with Engine(settings) as second:  # same database: it stands by
        await asyncio.sleep(1.5)
        assert _metric(second, "spool_projection_active", "session_runs") == 0
        await engine.store.append("s1", events[:1], tenant_id="ten_a", stream_type="session")
        head = await engine.store.head()
        async with asyncio.timeout(10):
            while await _checkpoint(engine, "session_runs") < head:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert _metric(second, "spool_projection_events_total", "session_runs") == 0
