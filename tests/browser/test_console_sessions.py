"""The console's login, sessions list and session page in headless Chromium, against a live
server with scripted agents: a bad key is refused and a good one lands on the list; the list
follows sessions as they are created and change, and filters by status and agent; the session
page streams a slow reply, queues a message while a turn runs, removes one from the queue,
interrupts, approves a tool call, and keeps the reply whole (not doubled) through dropped
connections and a server restart mid-reply; a reply cut by a dead worker shows as interrupted,
then redone. Login and sending work from the keyboard alone. Every page is kept as screenshots
(tests/artifacts/console-*.png, 1280x800 and 390x844); any console error fails the test."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Api, Live, serving
from tests.browser.conftest import REFUSED, Watched, log_in, screenshots, until
from tests.helpers import LOOKUP, cut_by_a_dead_worker

REPLY = " ".join(f"word{i}" for i in range(40))  # 10 s, at 0.25 s a word
SLOW = {"text": REPLY, "delay": 0.25}

# The text of every assistant entry of the timeline, in order.
_ASSISTANT = """() => [...document.querySelectorAll('[data-kind=assistant]')].map(e => ({
  text: e.querySelector('.text').textContent, stop: e.dataset.stopReason || null}))"""


async def _agent(live: Live, key: str, script: list[dict[str, Any]], **extra: Any) -> str:
    made = await live.post("/v1/agents", key, {
        "name": extra.pop("name", "scripted"), "model": {"script": script}, **extra})
    assert made.status_code == 201, made.text
    agent_id: str = made.json()["id"]
    return agent_id


async def _session(live: Live, key: str, agent_id: str, title: str | None = None) -> str:
    made = await live.post("/v1/sessions", key, {"agent_id": agent_id, "title": title})
    assert made.status_code == 201, made.text
    session_id: str = made.json()["id"]
    return session_id


async def _log(live: Live, key: str, sid: str) -> list[dict[str, Any]]:
    page = await live.client.get(f"/v1/sessions/{sid}/events?limit=500",
                                 headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    data: list[dict[str, Any]] = page.json()["data"]
    return data


async def _open_session(page: Watched, live: Live, key: str, sid: str) -> None:
    await log_in(page, live, key, f"#/sessions/{sid}")
    await until(page, "() => document.querySelector('.connection')?.textContent === 'Live'")


async def _send(page: Watched, text: str) -> None:
    await page.page.get_by_role("textbox", name="Message", exact=True).fill(text)
    await page.page.get_by_role("button", name="Send", exact=True).click()
    await until(page, "() => document.querySelector('#message').value === ''")


async def _streamed(page: Watched, words: int, entry: int = 0) -> None:
    """Waits until assistant entry ``entry`` shows ``words`` words."""
    await until(page, """([entry, words]) => {
      const e = document.querySelectorAll('[data-kind=assistant] .text')[entry];
      return e && e.textContent.split(' ').filter(Boolean).length >= words; }""", [entry, words])


async def _stopped(page: Watched, count: int) -> list[dict[str, Any]]:
    """The assistant entries once ``count`` of them have stopped."""
    await until(page, """(n) => document.querySelectorAll(
      '[data-kind=assistant][data-stop-reason]').length >= n""", count)
    entries: list[dict[str, Any]] = await page.page.evaluate(_ASSISTANT)
    return entries


async def _idle(page: Watched) -> None:
    await until(page, "() => document.querySelector('.facts .badge')?.textContent === 'idle'")


# --- login -----------------------------------------------------------------------------------


async def test_a_bad_key_is_refused_and_a_good_one_lands_on_the_list(
    live: Live, page: Watched,
) -> None:
    key = await live.member_key()
    await page.page.set_viewport_size({"width": 1280, "height": 800})
    await page.page.goto(live.base_url + "/")
    await screenshots(page, "login")
    page.allow(REFUSED)
    await page.page.locator("input[name=api_key]").fill("spk_not-a-key")
    await page.page.get_by_role("button", name="Log in").click()
    error = page.page.locator("#login-error")
    await error.wait_for(state="visible", timeout=60_000)
    assert await error.text_content() == "That API key was refused."
    assert await page.page.evaluate("sessionStorage.length") == 0
    await screenshots(page, "login-refused")

    await page.page.locator("input[name=api_key]").fill(key)
    await page.page.get_by_role("button", name="Log in").click()
    await page.page.get_by_role("heading", name="Sessions").wait_for(timeout=60_000)
    assert await page.page.evaluate("location.hash") == "#/sessions"
    assert key in await page.page.evaluate("Object.values(sessionStorage)")
    assert not [url for url in page.requests if key in url]  # a key is never in a URL
    off_origin = [url for url in page.requests if not url.startswith(live.base_url + "/")
                  and not url.startswith("data:")]
    assert off_origin == []

    await page.page.get_by_role("button", name="Log out").click()
    await page.page.locator("input[name=api_key]").wait_for(timeout=60_000)
    assert await page.page.evaluate("sessionStorage.length") == 0


async def test_login_and_send_from_the_keyboard_alone(live: Live, page: Watched) -> None:
    key = await live.member_key()
    sid = await _session(live, key, await _agent(live, key, [{"text": "hello there"}]),
                         title="by keyboard")
    await page.page.set_viewport_size({"width": 1280, "height": 800})
    await page.page.goto(live.base_url + "/")
    await until(page, "() => document.activeElement?.name === 'api_key'")  # focused at once
    await page.page.keyboard.type(key)
    await page.page.keyboard.press("Enter")
    await page.page.locator(f"tr[data-session-id='{sid}']").wait_for(timeout=60_000)
    await _tab_to(page, f"a[href='#/sessions/{sid}']")
    await page.page.keyboard.press("Enter")
    await _tab_to(page, "#message")
    await page.page.keyboard.type("hi from the keyboard")
    await _tab_to(page, "button[type=submit]")
    await page.page.keyboard.press("Enter")
    [reply] = await _stopped(page, 1)
    assert reply == {"text": "hello there", "stop": "end_turn"}
    # Ctrl+Enter sends from the box itself
    await _tab_to(page, "#message")
    await page.page.keyboard.type("again")
    await page.page.keyboard.press("Control+Enter")
    await _stopped(page, 2)
    users = await page.page.locator("[data-kind=user] .text").all_text_contents()
    assert users == ["hi from the keyboard", "again"]


async def _tab_to(page: Watched, selector: str) -> None:
    """Presses Tab until ``selector`` has the focus (at most 40 times)."""
    for _ in range(40):
        if await page.page.evaluate("(s) => document.activeElement?.matches(s)", selector):
            return
        await page.page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


# --- the list --------------------------------------------------------------------------------


async def test_the_list_shows_sessions_live_and_filters_them(live: Live, page: Watched) -> None:
    key = await live.member_key()
    # a turn that then waits for a client tool's result (requires_action)
    slow = await _agent(live, key, [{"text": "let me check", "delay": 0.1,
                                     "tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}],
                        name="slow", tools=[LOOKUP])
    quick = await _agent(live, key, [{"text": "done"}], name="quick")
    await log_in(page, live, key)
    assert await page.page.locator("tbody tr").count() == 0

    # created while the list is open: it appears, with its title linking to it
    first = await _session(live, key, slow, title="Plan the launch")
    row = page.page.locator(f"tr[data-session-id='{first}']")
    await row.wait_for(timeout=60_000)
    link = row.get_by_role("link", name="Plan the launch")
    assert await link.get_attribute("href") == f"#/sessions/{first}"
    assert await row.locator(".status").text_content() == "idle"
    # its status changes as its turn runs and waits
    await live.say(key, first, "go")
    await until(page, """(id) => document.querySelector(
      `tr[data-session-id='${id}'] .status`)?.textContent === 'requires_action'""", first)
    second = await _session(live, key, quick, title="Answer quickly")
    await live.say(key, second, "hi")
    await until(page, """(id) => { const row = document.querySelector(
      `tr[data-session-id='${id}']`); return row && row.querySelector('.status').textContent
      === 'idle' && row.children[3].textContent === '1'; }""", second)
    assert await page.page.locator("tbody tr").count() == 2
    assert (await page.page.locator("tbody tr").first.get_attribute("data-session-id")
            == second)  # newest first
    await screenshots(page, "sessions")

    # filters: by status, then by agent; kept in the hash
    await page.page.get_by_label("Status").select_option("requires_action")
    await until(page, "() => document.querySelectorAll('tbody tr').length === 1")
    assert await page.page.locator("tbody tr").get_attribute("data-session-id") == first
    assert "status=requires_action" in await page.page.evaluate("location.hash")
    await page.page.get_by_label("Status").select_option("")
    await page.page.get_by_label("Agent").select_option(label="quick")
    await until(page, """(id) => { const rows = document.querySelectorAll('tbody tr');
      return rows.length === 1 && rows[0].dataset.sessionId === id; }""", second)
    await page.page.reload()  # the filter survives a reload (it is in the hash)
    await until(page, """(id) => { const rows = document.querySelectorAll('tbody tr');
      return rows.length === 1 && rows[0].dataset.sessionId === id; }""", second)
    assert await page.page.get_by_label("Agent").input_value() == quick
    await screenshots(page, "sessions-filtered")


# --- the session page ------------------------------------------------------------------------


async def test_a_slow_reply_streams_in_with_its_usage(live: Live, page: Watched) -> None:
    key = await live.member_key()
    sid = await _session(live, key, await _agent(live, key, [SLOW]), title="Streaming")
    await _open_session(page, live, key, sid)
    await _send(page, "tell me")
    await _streamed(page, 5)
    partial = await page.page.evaluate(_ASSISTANT)
    assert REPLY.startswith(partial[0]["text"]) and partial[0]["text"] != REPLY
    assert partial[0]["stop"] is None  # still streaming
    await screenshots(page, "session-streaming")
    [reply] = await _stopped(page, 1)
    assert reply == {"text": REPLY, "stop": "end_turn"}
    usage = await page.page.locator("[data-kind=assistant] .usage").text_content()
    assert usage is not None and "40 out" in usage and "$" in usage
    await _idle(page)
    assert await page.page.locator(".facts").text_content() is not None
    await screenshots(page, "session")


async def test_queue_remove_and_interrupt_while_a_turn_runs(live: Live, page: Watched) -> None:
    key = await live.member_key()
    agent_id = await _agent(live, key, [SLOW])  # every turn's first model call: REPLY
    sid = await _session(live, key, agent_id, title="Busy")
    await _open_session(page, live, key, sid)
    await _send(page, "first")
    await _streamed(page, 3)
    # while it runs: the box offers to queue (the default) or interrupt
    await page.page.get_by_role("group", name="A turn is running").wait_for(timeout=60_000)
    await _send(page, "second")
    await _send(page, "third")
    queue = page.page.locator(".queue li span")
    await until(page, "() => document.querySelectorAll('.queue li').length === 2")
    assert await queue.all_text_contents() == ["second", "third"]
    await screenshots(page, "session-queue")

    await page.page.get_by_role("button", name="Remove from the queue: third").click()
    await until(page, "() => document.querySelectorAll('.queue li').length === 1")
    assert await queue.all_text_contents() == ["second"]
    removed = page.page.locator("[data-kind=interrupt]", has_text="removed")
    await removed.first.wait_for(timeout=60_000)

    await page.page.get_by_role("button", name="Interrupt").click()
    entries = await _stopped(page, 2)
    assert entries[0]["stop"] == "interrupted"
    assert REPLY.startswith(entries[0]["text"]) and entries[0]["text"] != REPLY
    assert entries[1] == {"text": REPLY, "stop": "end_turn"}  # the queued turn ran
    await _idle(page)
    assert await page.page.locator(".queue li").count() == 0
    log = await _log(live, key, sid)
    done = [e["data"]["status"] for e in log if e["type"] == "session_done"]
    assert sorted(done) == ["cancelled", "cancelled", "completed"]  # third removed, first cut
    await screenshots(page, "session-interrupted")


async def test_an_approval_is_approved_from_the_page(live: Live, page: Watched) -> None:
    key = await live.member_key()
    script: list[dict[str, Any]] = [{"text": "let me save that",
               "tool_calls": [{"name": "memory_write", "input": {"key": "k", "value": "v"}}]},
              {"text": "saved it"}]
    agent_id = await _agent(live, key, script, tools=[
        {"name": "memory_write", "executor": "server", "requires_approval": True}])
    sid = await _session(live, key, agent_id, title="Needs approval")
    await _open_session(page, live, key, sid)
    await _send(page, "remember k")
    approval = page.page.locator("[data-kind=approval]")
    await approval.get_by_role("button", name="Approve").wait_for(timeout=60_000)
    await until(page, """() => document.querySelector('.facts .badge')?.textContent
      === 'requires_action'""")
    await screenshots(page, "session-approval")
    await approval.get_by_role("button", name="Approve").click()
    await until(page, """() => document.querySelector('[data-kind=approval]')
      ?.dataset.decision === 'approve'""")
    entries = await _stopped(page, 2)
    assert [e["text"] for e in entries] == ["let me save that", "saved it"]
    tool = page.page.locator("[data-kind=tool]")
    assert await tool.get_attribute("data-done") == "true"
    assert not await tool.locator("details").get_attribute("open")  # folded until opened
    await tool.locator("summary").click()
    assert await tool.locator("details").get_attribute("open") == ""
    await _idle(page)
    await screenshots(page, "session-approved")


async def test_the_reply_stays_whole_through_drops_and_a_server_restart(
    settings: Settings, engine: Engine, page: Watched,
) -> None:
    async with serving(engine, settings) as live:
        key = await live.member_key()
        sid = await _session(live, key, await _agent(live, key, [SLOW]), title="Restarted")
        await _open_session(page, live, key, sid)
        await _send(page, "go")
        await _streamed(page, 5)
        # the connection drops: the browser reconnects after the last seq
        assert live.engine.open_streams.close_all("test: the connection drops") >= 1
        await _streamed(page, 10)
        await until(page, "() => document.querySelector('.connection').textContent === 'Live'")
        port = int(live.base_url.rsplit(":", 1)[1])
        refused = asyncio.ensure_future(page.page.wait_for_event(
            "requestfailed", predicate=lambda r: "/stream?" in r.url, timeout=60_000))
        page.allow("net::ERR_CONNECTION_REFUSED")
        engine.open_streams.close_all("test: the server restarts")
    await refused  # the browser's reconnect found the server down
    async with serving(engine, settings, port) as live:
        [reply] = await _stopped(page, 1)
        log = await _log(live, key, sid)
        users = await page.page.locator("[data-kind=user]").count()
        await screenshots(page, "session-restarted")
        await page.page.close()  # its stream with it, before this server stops
    assert reply == {"text": REPLY, "stop": "end_turn"}  # complete, not doubled
    assert users == 1
    assert "".join(e["data"]["text"] for e in log if e["type"] == "message_delta") == REPLY


async def test_a_reply_cut_by_a_dead_worker_shows_interrupted_then_redone(
    api: Api, settings: Settings, engine: Engine, page: Watched,
) -> None:
    key, sid = await cut_by_a_dead_worker(api)
    async with serving(engine, settings) as live:
        await _open_session(page, live, key, sid)
        entries = await _stopped(page, 2)
        await _idle(page)
        await screenshots(page, "session-cut")
        await page.page.close()
    assert entries == [{"text": "compl", "stop": "interrupted"},
                       {"text": "complete reply", "stop": "end_turn"}]


async def test_the_page_streams_on_after_its_token_ran_out(live: Live, page: Watched) -> None:
    """A page left open for hours (a laptop asleep): its stream token expired unrenewed and
    the connection dropped; the refused reconnect gets a new token and the reply goes on."""
    key = await live.member_key()
    sid = await _session(live, key, await _agent(live, key, [SLOW]), title="Left open")
    await _open_session(page, live, key, sid)
    await _send(page, "go")
    await _streamed(page, 3)
    pool = live.engine._pool
    assert pool is not None
    await pool.execute("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
    page.allow(REFUSED)
    assert live.engine.open_streams.close_all("test: the connection drops") >= 1
    [reply] = await _stopped(page, 1)
    assert reply == {"text": REPLY, "stop": "end_turn"}
    assert await page.page.locator("#banner").is_hidden()  # not fatal: nothing to report
