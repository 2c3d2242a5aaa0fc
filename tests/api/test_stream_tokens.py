"""Stream tokens: a browser's EventSource opens SSE streams with ``?access_token=``. A token is
shown once, stored hashed, reads one tenant's streams (or one session's), expires, dies with
the API key that asked for it, and an API key in the URL is refused."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.api import sse_client
from tests.api.conftest import Api, Live
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_error, events_from


async def token(live: Live, key: str, **body: object) -> str:
    response = await live.post("/v1/stream_tokens", key, body)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    value: str = response.json()["token"]
    return value


async def test_an_event_source_reads_a_session_with_a_stream_token(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    await live.say(key, sid, "hello")
    value = await token(live, key, session_id=sid)
    assert value.startswith("sst_")
    # No Authorization header: only the token in the URL, as EventSource sends it.
    async with live.client.stream("GET", f"/v1/sessions/{sid}/stream?access_token={value}") \
            as response:
        assert response.status_code == 200
        frames = await events_from(sse_client.frames(response), 2)
    assert [f.event for f in frames] == ["session_created", "user_message"]
    # the token is kept as a hash only
    secret = value[len("sst_") + 26 + 1:]  # sst_<id>_<secret>
    stored = await live.engine._pool.fetchval("SELECT secret_hash FROM stream_tokens")
    assert stored == hashlib.sha256(secret.encode()).digest()


async def test_a_tenant_token_reads_the_firehose(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    value = await token(live, key)
    async with live.client.stream("GET", f"/v1/events/stream?access_token={value}") as response:
        assert response.status_code == 200
        [frame] = await events_from(sse_client.frames(response), 1)
    assert frame.envelope["stream_id"] == sid


async def test_what_a_stream_token_may_not_do(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "viewer")
    sid = (await api.request("POST", "/v1/sessions", await api.key(tenant, "member"),
                             json={})).json()["id"]
    other_sid = (await api.request("POST", "/v1/sessions", await api.key(tenant, "member"),
                                   json={})).json()["id"]
    created = await api.request("POST", "/v1/stream_tokens", key, json={"session_id": sid})
    assert created.status_code == 201, created.text
    scoped = created.json()["token"]

    def stream(path: str, access_token: str) -> object:
        return api.request("GET", f"{path}?access_token={access_token}")

    # another session, the firehose: 403
    error = assert_error(await stream(f"/v1/sessions/{other_sid}/stream", scoped), 403,
                         "forbidden")
    assert sid in error["message"]
    assert_error(await stream("/v1/events/stream", scoped), 403, "forbidden")
    # anything but a stream: the token is not an API key
    assert_error(await api.request("GET", "/v1/sessions", scoped), 401, "unauthorized")
    # an API key in the URL is refused, naming the parameter
    error = assert_error(await stream(f"/v1/sessions/{sid}/stream", key), 401, "unauthorized")
    assert error["details"]["field"] == "access_token"
    # a forged or mangled token
    forged = scoped[:-4] + ("AAAA" if not scoped.endswith("AAAA") else "BBBB")
    assert_error(await stream(f"/v1/sessions/{sid}/stream", forged), 401, "unauthorized")
    # a token for another tenant's session cannot be made
    other = await api.key(await api.tenant("other"))
    refused = await api.request("POST", "/v1/stream_tokens", other, json={"session_id": sid})
    assert assert_error(refused, 404, "not_found")["details"]["field"] == "session_id"
    for body, field in (({"ttl_seconds": 5}, "ttl_seconds"), ({"ttl_seconds": 3601},
                                                              "ttl_seconds"),
                        ({"session": sid}, "session")):
        bad = await api.request("POST", "/v1/stream_tokens", key, json=body)
        assert assert_error(bad, 422, "invalid_request")["details"]["field"] == field


async def test_a_token_expires_and_dies_with_its_key(api: Api,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tenant = await api.tenant()
    response = await api.request("POST", "/v1/api_keys", ADMIN_TOKEN,
                                 json={"name": "ui", "role": "viewer"},
                                 headers={"Spool-Tenant": tenant})
    key, key_id = response.json()["key"], response.json()["id"]
    sid = (await api.request("POST", "/v1/sessions", await api.key(tenant, "member"),
                             json={})).json()["id"]
    short = (await api.request("POST", "/v1/stream_tokens", key, json={"ttl_seconds": 10}))
    value = short.json()["token"]
    pool = api.app.state.engine._pool
    await pool.execute("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
    error = assert_error(await api.request("GET", f"/v1/events/stream?access_token={value}"),
                         401, "unauthorized")
    assert "expired" in error["message"]

    fresh = (await api.request("POST", "/v1/stream_tokens", key, json={})).json()["token"]
    revoked = await api.request("DELETE", f"/v1/api_keys/{key_id}", ADMIN_TOKEN,
                                headers={"Spool-Tenant": tenant})
    assert revoked.status_code == 200, revoked.text
    await asyncio.sleep(0)  # nothing cached: the next connection is refused at once
    error = assert_error(
        await api.request("GET", f"/v1/sessions/{sid}/stream?access_token={fresh}"), 401,
        "unauthorized")
    assert "revoked" in error["message"]
    # the tokens were in URLs: the request logs carry paths without the query string
    logged = capsys.readouterr().out
    assert "http.request" in logged and "/v1/events/stream" in logged
    assert value not in logged and fresh not in logged and "access_token" not in logged
