"""Turn submissions are rate-limited per tenant per minute, in Redis (one count for every
process): X-RateLimit headers on each submission, then 429 with Retry-After and nothing
appended; other tenants are not affected; without Redis the limiter lets requests through."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as redis

from api.app import create_app
from engine.engine import Engine
from engine.infra.ratelimit import RateLimiter
from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import assert_error, log, say

LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, turn_rate_limit=LIMIT)


async def new_session(api: Api, key: str) -> str:
    response = await api.request("POST", "/v1/sessions", key, json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_past_the_limit_a_message_is_429_and_not_appended(
        api: Api, settings: Settings, tmp_path: Path) -> None:
    key = await api.key(await api.tenant())
    sid = await new_session(api, key)
    remaining = []
    for _ in range(LIMIT - 1):
        sent = await say(api, key, sid, "hi")
        assert sent.status_code == 202, sent.text
        assert sent.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert 1 <= int(sent.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(int(sent.headers["X-RateLimit-Remaining"]))
    # a second process on the same Redis shares the count
    async with Engine(settings) as other:
        other_app = create_app(settings, other)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other_app),
                                     base_url="http://other.test") as client:
            sent = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"},
                                     headers={"Authorization": f"Bearer {key}"})
    assert sent.status_code == 202, sent.text
    remaining.append(int(sent.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    before = len(await log(api, key, sid))
    refused = await say(api, key, sid, "one too many")
    error = assert_error(refused, 429, "rate_limited")
    assert str(LIMIT) in error["message"]
    assert int(refused.headers["Retry-After"]) == int(refused.headers["X-RateLimit-Reset"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert len(await log(api, key, sid)) == before  # nothing appended
    # a retry of a message that went through is answered as the first time, not counted
    retried = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                json={"content": "hi"}, headers={"Idempotency-Key": "k1"})
    assert retried.status_code == 429  # a new message, past the limit
    await api.app.state.engine._limits.delete(  # the next minute, as far as the count knows
        *await api.app.state.engine._limits.keys("spool:{log}:rate:*"))
    first = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                              json={"content": "once"}, headers={"Idempotency-Key": "k2"})
    assert first.status_code == 202
    for _ in range(LIMIT + 1):
        again = await api.request("POST", f"/v1/sessions/{sid}/messages", key,
                                  json={"content": "once"}, headers={"Idempotency-Key": "k2"})
        assert again.status_code == 202 and again.json() == first.json()
    assert int(first.headers["X-RateLimit-Remaining"]) == LIMIT - 1
    # another tenant has its own count
    other_key = await api.key(await api.tenant("other"))
    assert (await say(api, other_key, await new_session(api, other_key), "hi")).status_code == 202


async def test_without_redis_the_limiter_lets_requests_through() -> None:
    unreachable = redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
    try:
        assert await RateLimiter(unreachable, per_minute=1).take("ten_x") is None
        assert await RateLimiter(unreachable, per_minute=1).take("ten_x") is None
    finally:
        await unreachable.aclose()


async def test_no_limit_means_no_headers(api: Api) -> None:
    api.app.state.engine.rate_limiter.per_minute = 0
    key = await api.key(await api.tenant())
    sent = await say(api, key, await new_session(api, key), "hi")
    assert sent.status_code == 202 and "X-RateLimit-Limit" not in sent.headers


ORIGIN = "https://app.example"
# What a browser lets a script read of any response without Access-Control-Expose-Headers.
_SAFELISTED = {"cache-control", "content-language", "content-length", "content-type", "expires",
               "last-modified", "pragma"}


async def test_a_cross_origin_script_can_read_the_rate_limit_headers(
        api: Api, settings: Settings, engine: Engine) -> None:
    """CORS: every header the API answers a message with (X-RateLimit-*, Spool-Position,
    X-Request-Id, and Retry-After on the 429) is in Access-Control-Expose-Headers."""
    key = await api.key(await api.tenant())
    sid = await new_session(api, key)
    cors_app = create_app(msgspec.structs.replace(settings, cors_origins=(ORIGIN,)), engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cors_app),
                                 base_url="http://spool.test") as client:
        preflight = await client.options(f"/v1/sessions/{sid}/messages", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200, preflight.text
        answers = [await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"},
                                     headers={"Authorization": f"Bearer {key}", "Origin": ORIGIN})
                   for _ in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [202] * LIMIT + [429]
    for answer in answers:
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        exposed = {h.strip().lower()
                   for h in answer.headers["access-control-expose-headers"].split(",")}
        sent = {name.lower() for name in answer.headers} - _SAFELISTED
        unreadable = {h for h in sent - exposed  # Vary is for caches, not scripts
                      if not h.startswith("access-control-") and h != "vary"}
        assert not unreadable, unreadable
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "x-request-id"} <= sent
    assert "spool-position" in {name.lower() for name in answers[0].headers}
    assert "retry-after" in {name.lower() for name in answers[-1].headers}
