"""/static/spool.js in headless Chromium: a page follows a session's stream (and the tenant's)
while a scripted agent streams a reply; the server drops every stream twice meanwhile (the
browser reconnects with Last-Event-ID), and the stream tokens live 10 s but are renewed every
4 s (the server allows no resume with an expired token here). The page gets every event once,
in order, and the whole reply; likewise across a restart of the server (down when the browser
reconnects, then up on the same port). A connection the server refuses (its token ran out
unrenewed) is reopened with a new token; once no token can be had (the key revoked), the
stream stops."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.engine import Engine
from engine.events import EVENT_TYPES
from engine.settings import Settings
from tests.api.conftest import Live, serving
from tests.browser.conftest import Watched
from tests.conftest import ADMIN_TOKEN

REPLY = " ".join(f"word{i}" for i in range(40))  # 10 s, at 0.25 s a word
PAGE = "/test/page.html"  # served by the test: on the server's origin, as a console would be

# Opens a stream with spool.js; what it delivers goes to window.seen.
_START = """async ({kind, key, sessionId}) => {
  const spool = await import("/static/spool.js");
  window.seen = [];
  window.failures = [];
  const options = {
    token: spool.tokenMinter(key, {sessionId, ttlSeconds: 10}),
    renewBeforeSeconds: 6,
    onEvent: (envelope, type, id) => window.seen.push({id, type, envelope}),
    onError: (error, {fatal}) => window.failures.push({message: error.message, fatal}),
  };
  window.stream = kind === "session" ? spool.openSessionStream(sessionId, options)
                                     : spool.openTenantStream(options);
  return spool.EVENT_TYPES;
}"""

# What Chromium itself logs when the server refuses a request with 401 (spool.js handles it).
_REFUSED = "the server responded with a status of 401"

_STATS = """() => ({opens: window.stream.opens, renewals: window.stream.renewals,
  gaps: window.stream.gaps, failures: window.failures})"""


async def _open(page: Watched, live: Live, **start: str | None) -> list[str]:
    await page.page.route(live.base_url + PAGE, lambda route: route.fulfill(
        body="<!doctype html><title>spool.js</title>", content_type="text/html"))
    await page.page.goto(live.base_url + PAGE)
    types: list[str] = await page.page.evaluate(_START, start)
    return types


async def _until(page: Watched, condition: str, arg: Any = None) -> None:
    await page.page.wait_for_function(condition, arg=arg, polling=50, timeout=60_000)


async def _slow_session(live: Live, key: str) -> str:
    agent = await live.post("/v1/agents", key, {
        "name": "slow", "model": {"script": [{"text": REPLY, "delay": 0.25}]}})
    assert agent.status_code == 201, agent.text
    session = await live.post("/v1/sessions", key, {"agent_id": agent.json()["id"]})
    session_id: str = session.json()["id"]
    return session_id


async def _follow_a_reply_through_drops(page: Watched, live: Live, key: str, sid: str) -> None:
    """Say something; while the reply streams, drop every stream, and again once the page has
    renewed its token; until the reply is done and the token renewed twice."""
    await live.say(key, sid, "go")
    for condition in ("window.seen.filter(e => e.type === 'message_delta').length >= 5",
                      "window.stream.renewals >= 1"):
        await _until(page, f"() => {condition} && window.stream.connected")
        assert live.engine.open_streams.close_all("test: the connection drops") >= 1
    await _until(page, "() => window.seen.some(e => e.type === 'session_done')")
    await _until(page, "() => window.stream.renewals >= 2")


async def _log(live: Live, key: str, path: str) -> list[dict[str, Any]]:
    page = await live.client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    data: list[dict[str, Any]] = page.json()["data"]
    return data


def _kept_up(stats: dict[str, Any]) -> None:
    # opened again after the drops and the renewals (they may coincide); never refused, no hole
    assert stats["renewals"] >= 2 and stats["opens"] >= 3, stats
    assert stats["gaps"] == 0 and stats["failures"] == [], stats


async def test_a_page_follows_a_session_through_drops_and_token_renewals(
    live: Live, page: Watched,
) -> None:
    key = await live.member_key()
    sid = await _slow_session(live, key)
    types = await _open(page, live, kind="session", key=key, sessionId=sid)
    assert types == sorted(EVENT_TYPES)  # the module is served with the server's list
    await _until(page, "() => window.seen.length >= 1")
    await _follow_a_reply_through_drops(page, live, key, sid)

    seen = await page.page.evaluate("window.seen")
    log = await _log(live, key, f"/v1/sessions/{sid}/events?limit=500")
    assert [e["id"] for e in seen] == [e["seq"] for e in log]  # every seq once, in order
    assert [e["envelope"] for e in seen] == log
    assert [e["type"] for e in seen] == [e["type"] for e in log]
    deltas = [e["envelope"]["data"]["text"] for e in seen if e["type"] == "message_delta"]
    assert "".join(deltas) == REPLY
    _kept_up(await page.page.evaluate(_STATS))


async def test_a_page_follows_the_tenant_stream_through_drops_and_token_renewals(
    live: Live, page: Watched,
) -> None:
    key = await live.member_key()
    await _open(page, live, kind="tenant", key=key, sessionId=None)
    sid = await _slow_session(live, key)
    await _until(page, "() => window.seen.length >= 2")  # agent_created, session_created
    await _follow_a_reply_through_drops(page, live, key, sid)

    log = await _log(live, key, "/v1/events?limit=500")
    await _until(page, "n => window.seen.length >= n", len(log))
    seen = await page.page.evaluate("window.seen")
    assert [e["id"] for e in seen][:len(log)] == [e["position"] for e in log]
    assert [e["envelope"] for e in seen][:len(log)] == log
    deltas = [e["envelope"]["data"]["text"] for e in seen if e["type"] == "message_delta"]
    assert "".join(deltas) == REPLY
    _kept_up(await page.page.evaluate(_STATS))


async def test_a_page_follows_a_session_through_a_server_restart(
    settings: Settings, engine: Engine, page: Watched,
) -> None:
    async with serving(engine, settings) as live:
        key = await live.member_key()
        sid = await _slow_session(live, key)
        await _open(page, live, kind="session", key=key, sessionId=sid)
        await live.say(key, sid, "go")
        await _until(page, "() => window.seen.filter(e => e.type === 'message_delta').length >= 5")
        port = int(live.base_url.rsplit(":", 1)[1])
        # the browser's reconnect (2 s after the close) finds the server down
        refused = asyncio.ensure_future(page.page.wait_for_event(
            "requestfailed", predicate=lambda r: "/stream?" in r.url, timeout=60_000))
        page.allow("net::ERR_CONNECTION_REFUSED")
        # as `spool serve` stops: every stream closed with a last comment, then the server
        engine.open_streams.close_all("test: the server restarts")
    await refused
    async with serving(engine, settings, port) as live:
        await _until(page, "() => window.seen.some(e => e.type === 'session_done')")
        seen = await page.page.evaluate("window.seen")
        log = await _log(live, key, f"/v1/sessions/{sid}/events?limit=500")
        await page.page.close()  # its stream with it, before this server stops
    assert [e["id"] for e in seen] == [e["seq"] for e in log]
    assert "".join(e["envelope"]["data"]["text"] for e in seen
                   if e["type"] == "message_delta") == REPLY


async def test_a_refused_stream_is_reopened_with_a_new_token_until_the_key_is_revoked(
    live: Live, page: Watched,
) -> None:
    tenant = (await live.post("/v1/tenants", ADMIN_TOKEN, {"name": "web"})).json()["id"]
    made = await live.post("/v1/api_keys", ADMIN_TOKEN, {"name": "ui", "role": "member"},
                           **{"Spool-Tenant": tenant})
    key, key_id = made.json()["key"], made.json()["id"]
    sid = await live.session(key)
    await _open(page, live, kind="session", key=key, sessionId=sid)
    await _until(page, "() => window.seen.length >= 1")
    # The token runs out unrenewed (a laptop asleep), then the connection drops: the browser's
    # reconnect is refused (401), so spool.js makes a new token and reopens after the last id.
    pool = live.engine._pool
    assert pool is not None
    await pool.execute("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
    page.allow(_REFUSED)
    live.engine.open_streams.close_all("test: the connection drops")
    await live.say(key, sid, "after the drop")
    await _until(page, "() => window.seen.length >= 2")
    stats = await page.page.evaluate(_STATS)
    assert stats["failures"] == [{"message": "the stream was refused", "fatal": False}]
    await live.say(key, sid, "live again")
    await _until(page, "() => window.seen.length >= 3")
    assert [e["id"] for e in await page.page.evaluate("window.seen")] == [1, 2, 3]

    # Revoking the key closes the stream; no new token can be made: that is final.
    revoked = await live.client.delete(f"/v1/api_keys/{key_id}", headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Spool-Tenant": tenant})
    assert revoked.status_code == 200, revoked.text
    await _until(page, "() => window.failures.some(f => f.fatal)")
    assert await page.page.evaluate("window.stream.closed")
    assert (await page.page.evaluate("window.failures"))[-1]["fatal"] is True


async def test_a_duplicate_is_dropped_and_a_hole_reported(live: Live, page: Watched) -> None:
    """What the server never sends, from a stream the test serves instead of it."""
    frames = "".join(
        f"id: {seq}\nevent: user_message\ndata: {{\"seq\": {seq}}}\n\n" for seq in (1, 2, 2, 4))
    stream = f"{live.base_url}/v1/sessions/ses_x/stream?*"
    await page.page.route(stream, lambda route: route.fulfill(
        body="retry: 600000\n\n" + frames, content_type="text/event-stream"))
    await page.page.route(live.base_url + PAGE, lambda route: route.fulfill(
        body="<!doctype html><title>spool.js</title>", content_type="text/html"))
    await page.page.goto(live.base_url + PAGE)
    await page.page.evaluate("""async () => {
      const spool = await import("/static/spool.js");
      window.seen = [];
      window.holes = [];
      window.stream = spool.openSessionStream("ses_x", {
        token: async () => ({token: "sst_x", expires_at: new Date(Date.now() + 60000).toJSON()}),
        onEvent: (envelope, type, id) => window.seen.push(id),
        onGap: (gap) => window.holes.push(gap),
      });
    }""")
    await _until(page, "() => window.seen.length >= 3")
    assert await page.page.evaluate("window.seen") == [1, 2, 4]
    assert await page.page.evaluate("window.holes") == [{"expected": 3, "got": 4}]
    assert await page.page.evaluate("window.stream.duplicatesDropped") == 1
