"""Service faults become 503 `unavailable` with Retry-After (never a 500), write nothing
partial, and the API recovers by itself once the service is back."""

from __future__ import annotations

import asyncpg
import httpx

from api.app import create_app
from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Api
from tests.conftest import ADMIN_TOKEN, Services
from tests.helpers import assert_error


async def _set_database_reachable(services: Services, database_url: str, ok: bool) -> None:
    """Refuse (or allow) new connections to the test database and cut the existing ones."""
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(ok).lower()}')
        if not ok:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()", name,
            )
    finally:
        await conn.close()


async def test_postgres_unreachable_is_503_then_recovers(
    api: Api, services: Services, settings: Settings
) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    url = settings.database_url or ""
    await _set_database_reachable(services, url, False)
    try:
        for _ in range(3):
            response = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                         json={"content": "lost?"})
            assert_error(response, 503, "unavailable")
            assert response.headers["retry-after"] == "1"
        ready = await api.request("GET", "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"] == "down"
    finally:
        await _set_database_reachable(services, url, True)
    statuses = []
    for _ in range(12):  # connections cut while idle may fail once each, then are replaced
        response = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                     json={"content": "hi"})
        statuses.append(response.status_code)
    assert set(statuses) <= {202, 503}, statuses
    assert statuses[-1] == 202
    events = (await api.request("GET", f"/v1/sessions/{sid}/events", key)).json()["data"]
    expected = ["session_created"] + ["user_message"] * statuses.count(202)
    assert [e["type"] for e in events] == expected
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_readyz_reports_a_redis_that_is_down(settings: Settings) -> None:
    down = Settings(database_url=settings.database_url, redis_url="redis://127.0.0.1:1/0",
                    data_dir=settings.data_dir, admin_token=ADMIN_TOKEN)
    async with Engine(down) as engine:
        transport = httpx.ASGITransport(app=create_app(down, engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded",
                               "checks": {"postgres": "ok", "redis": "down"}}
