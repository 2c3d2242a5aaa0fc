"""The console's board, agents, budgets, approvals and replay pages in headless Chromium,
against a live server, everything checked over the API as well: a task moved with its Move
control (with the keyboard alone too) or dragged to a column changes status, a blocked task
shows its blocker and unblocks live once the blocker is done, a comment shows; the agents page
shows status, version, heartbeat and usage; the budgets page draws its bars and limit lines; a
waiting approval of any session is listed and approving it resolves it; the replay scrubber
steps with the arrow keys and shows /state?at= of the event it is on. Every page is
photographed at 1280x800 and 390x844 (tests/artifacts/) and must not scroll sideways; any
browser console error fails the test (the ``page`` fixture)."""


from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from playwright.async_api import Locator, expect

from engine.prices import ModelPrice
from engine.settings import Settings
from tests.api.conftest import Api, Live
from tests.browser.conftest import Watched, log_in, screenshots
from tests.helpers import (
    LOOKUP,
    agent,
    create_agent,
    log,
    new_board,
    new_task,
    say,
    session,
    settle,
)

MODEL = "test-model"  # $1 per input token, $2 per output token
WAIT = 30_000  # ms: how long a page may take to show what the test waits for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, prices=((MODEL, ModelPrice(input=1_000_000, output=2_000_000)),))


async def _task(api: Api, key: str, task_id: str) -> dict[str, Any]:
    response = await api.request("GET", f"/v1/tasks/{task_id}", key)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def _card(page: Watched, status: str, task_id: str) -> Locator:
    return page.page.locator(f'section.column[data-status="{status}"] '
                             f'li[data-task-id="{task_id}"]')


async def _move(card: Locator, status: str) -> None:
    await card.locator("select[name=status]").select_option(status)
    await card.get_by_role("button", name="Move").click()


async def test_the_board_moves_tasks_unblocks_one_live_and_shows_comments(
    api: Api, live: Live, page: Watched,
) -> None:
    key = await api.key(await api.tenant(), "member")
    board = await new_board(api, key, "Launch")
    spec = await new_task(api, key, board, title="Write the spec")
    build = await new_task(api, key, board, title="Build it", dependencies=[spec["id"]])
    assert build["status"] == "blocked"
    await log_in(page, live, key, "#/board")
    await screenshots(page, "boards")
    await page.page.get_by_role("link", name="Launch").click()
    await expect(page.page.locator("h1")).to_have_text("Launch", timeout=WAIT)
    assert page.page.url.endswith(f"#/board/{board}")

    for status in ("inbox", "in_progress", "review", "blocked", "done"):
        column = page.page.locator(f'section.column[data-status="{status}"] h2')
        await expect(column).to_be_visible(timeout=WAIT)
    blocked = _card(page, "blocked", build["id"])
    await expect(blocked.locator(".blocker")).to_have_text("Write the spec", timeout=WAIT)
    await screenshots(page, "board")

    await _move(_card(page, "inbox", spec["id"]), "in_progress")
    await expect(_card(page, "in_progress", spec["id"])).to_be_visible(timeout=WAIT)
    assert (await _task(api, key, spec["id"]))["status"] == "in_progress"

    # With the keyboard alone: the Move control, a letter picks "Review", Tab, Enter.
    await _card(page, "in_progress", spec["id"]).locator("select[name=status]").focus()
    await page.page.keyboard.press("r")
    await page.page.keyboard.press("Tab")
    await page.page.keyboard.press("Enter")
    await expect(_card(page, "review", spec["id"])).to_be_visible(timeout=WAIT)
    assert (await _task(api, key, spec["id"]))["status"] == "review"

    # Done: the engine gives the blocked task back its status, and the page shows it live.
    await _move(_card(page, "review", spec["id"]), "done")
    unblocked = _card(page, "inbox", build["id"])
    await expect(unblocked).to_be_visible(timeout=WAIT)
    await expect(unblocked.locator(".blocked-by")).to_have_count(0)
    assert (await _task(api, key, build["id"]))["status"] == "inbox"
    assert (await _task(api, key, spec["id"]))["status"] == "done"

    # Dragging a card to a column moves it too.
    await unblocked.drag_to(page.page.locator('section.column[data-status="in_progress"]'),
                            source_position={"x": 4, "y": 4})  # the card, not a control in it
    unblocked = _card(page, "in_progress", build["id"])
    await expect(unblocked).to_be_visible(timeout=WAIT)
    assert (await _task(api, key, build["id"]))["status"] == "in_progress"

    await unblocked.get_by_role("button", name='Open "Build it"').click()
    await page.page.fill("#comment-body", "starting on Monday")
    await page.page.get_by_role("button", name="Add comment").click()
    await expect(page.page.locator(".task-detail .comments li .body")).to_have_text(
        ["starting on Monday"], timeout=WAIT)
    await expect(page.page.locator(".task-detail .task-facts")).to_contain_text("Write the spec")
    await expect(page.page.locator(".task-detail")).not_to_contain_text("null")
    comments = (await api.request("GET", f"/v1/tasks/{build['id']}/comments", key)).json()
    assert [c["body"] for c in comments["data"]] == ["starting on Monday"]
    await screenshots(page, "board-task")


async def test_the_agents_page_shows_status_version_heartbeat_and_usage(
    api: Api, live: Live, page: Watched,
) -> None:
    key = await api.key(await api.tenant(), "owner")
    agent_id = await agent(api, key, [{"text": "hello there", "input_tokens": 5,
                                       "output_tokens": 2}], name="greeter")
    sid = await session(api, key, agent_id)
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    token = (await api.request("POST", f"/v1/agents/{agent_id}/tokens", key, json={})).json()
    beat = await api.request("POST", f"/v1/agents/{agent_id}/heartbeat", token["token"], json={})
    assert beat.status_code == 202, beat.text
    position = beat.json()["event"]["position"]
    seen = (await api.request("GET", f"/v1/agents/{agent_id}?min_position={position}", key))
    view = seen.json()["view"]
    assert (view["status"], view["turns"], view["tokens"]) == ("idle", 1, 7)

    await log_in(page, live, key, "#/agents")
    row = page.page.locator(f'tr[data-agent-id="{agent_id}"]')
    await expect(row.locator("th")).to_contain_text("greeter", timeout=WAIT)
    await expect(row.locator('[data-field="status"]')).to_have_text("idle")
    await expect(row.locator('[data-field="version"]')).to_have_text("v1")
    await expect(row.locator('[data-field="heartbeat"] time')).to_have_attribute(
        "datetime", view["last_heartbeat_at"])
    await expect(row.locator('[data-field="sessions"]')).to_have_text("0 active of 1")
    await expect(row.locator('[data-field="turns"]')).to_have_text("1")
    await expect(row.locator('[data-field="tokens"]')).to_have_text("7")
    await screenshots(page, "agents")


async def test_the_budgets_page_charts_spend_against_the_limits(
    api: Api, live: Live, page: Watched,
) -> None:
    key = await api.key(await api.tenant(), "owner")
    agent_id = await create_agent(api, key, name="spender", model={
        "adapter": "scripted", "name": MODEL,
        "script": [{"text": "ok", "input_tokens": 40, "output_tokens": 10}]})
    for scope, limits in (("tenant", {"day": {"usd": 100}}),
                          (f"agent:{agent_id}", {"month": {"usd": 500, "tokens": 1000}})):
        put = await api.request("PUT", f"/v1/budgets/{scope}", key, json={"limits": limits})
        assert put.status_code == 200, put.text
    sid = await session(api, key, agent_id)
    await say(api, key, sid, "spend")
    await settle(api, key, sid, "idle")
    last = (await log(api, key, sid))[-1]["position"]
    [total] = (await api.request("GET", f"/v1/usage?min_position={last}", key)).json()["data"]
    assert (total["usd"], total["tokens"]) == (60.0, 50)  # $40 in, $20 out
    today = (await log(api, key, sid))[-1]["created_at"][:10]

    await log_in(page, live, key, "#/budgets")
    days = page.page.locator('svg[data-chart="per-day"]')
    await expect(days.locator(f'rect.bar[data-key="{today}"]')).to_have_attribute(
        "data-value", "60", timeout=WAIT)
    await expect(days.locator("rect.bar")).to_have_count(30)
    await expect(days.locator("line.limit")).to_have_attribute("data-value", "100")
    agents = page.page.locator('svg[data-chart="per-agent"]')
    await expect(agents.locator(f'rect.bar[data-key="{agent_id}"]')).to_have_attribute(
        "data-value", "60")
    await expect(agents.locator(f'line.limit[data-key="{agent_id}"]')).to_have_attribute(
        "data-value", "500")
    await expect(page.page.locator('tr[data-scope="tenant"][data-period="day"]')).to_contain_text(
        "$60.00")
    await screenshots(page, "budgets")

    await page.page.get_by_role("button", name="Tokens").click()
    await expect(days.locator(f'rect.bar[data-key="{today}"]')).to_have_attribute(
        "data-value", "50")
    await expect(agents.locator(f'line.limit[data-key="{agent_id}"]')).to_have_attribute(
        "data-value", "1000")
    await expect(days.locator("line.limit")).to_have_count(0)  # the day has no token limit


async def test_the_approvals_page_lists_waiting_calls_of_every_session_and_approves_one(
    api: Api, live: Live, page: Watched,
) -> None:
    key = await api.key(await api.tenant(), "member")
    call = {"name": "lookup", "input": {"word": "x"}}
    script: list[dict[str, Any]] = [{"text": "let me look", "tool_calls": [call]},
                                    {"text": "found it"}]
    agent_id = await agent(api, key, script, tools=[{**LOOKUP, "requires_approval": True}])
    sids = [await session(api, key, agent_id) for _ in range(2)]
    for sid in sids:
        await say(api, key, sid, "look up x")
        await settle(api, key, sid, "requires_action")
    pending = (await api.request("GET", "/v1/approvals?status=pending", key)).json()["data"]
    assert sorted(a["session_id"] for a in pending) == sorted(sids)

    await log_in(page, live, key, "#/approvals")
    cards = page.page.locator("article.approval")
    await expect(cards).to_have_count(2, timeout=WAIT)
    for approval in pending:
        card = page.page.locator(f'article[data-approval-id="{approval["id"]}"]')
        await expect(card.locator("h2")).to_have_text("lookup")
        await expect(card.get_by_role("link", name=approval["session_id"])).to_be_visible()
    await screenshots(page, "approvals")

    chosen = pending[0]
    card = page.page.locator(f'article[data-approval-id="{chosen["id"]}"]')
    await card.locator("input[name=reason]").fill("fine by me")
    await card.get_by_role("button", name="Approve").click()
    await expect(cards).to_have_count(1, timeout=WAIT)
    resolved = (await api.request("GET", f"/v1/approvals/{chosen['id']}", key)).json()
    assert (resolved["status"], resolved["reason"]) == ("approved", "fine by me")
    other = (await api.request("GET", f"/v1/approvals/{pending[1]['id']}", key)).json()
    assert other["status"] == "pending"


async def _state_at(api: Api, key: str, sid: str, seq: int) -> Any:
    response = await api.request("GET", f"/v1/sessions/{sid}/state?at={seq}", key)
    assert response.status_code == 200, response.text
    return response.json()


async def _shown(page: Watched, seq: int) -> Any:
    """The state the page shows, once it shows event ``seq``'s."""
    await expect(page.page.locator(".replay")).to_have_attribute("data-at", str(seq),
                                                                 timeout=WAIT)
    await expect(page.page.locator("#replay-at")).to_have_value(str(seq))
    return json.loads(await page.page.locator("[data-replay-state]").text_content() or "")


async def test_the_replay_scrubber_steps_with_arrow_keys_through_the_states(
    api: Api, live: Live, page: Watched,
) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "one two three"}]))
    await say(api, key, sid, "count")
    await settle(api, key, sid, "idle")
    events = await log(api, key, sid)
    last = events[-1]["seq"]

    await log_in(page, live, key, f"#/sessions/{sid}/replay?at=2")
    assert await _shown(page, 2) == await _state_at(api, key, sid, 2)
    await page.page.focus("#replay-at")
    for _ in range(3):
        await page.page.keyboard.press("ArrowRight")
    assert await _shown(page, 5) == await _state_at(api, key, sid, 5)
    assert page.page.url.endswith(f"#/sessions/{sid}/replay?at=5")
    await page.page.keyboard.press("ArrowLeft")
    assert await _shown(page, 4) == await _state_at(api, key, sid, 4)
    await expect(page.page.locator(".replay-event h2 code")).to_have_text(events[3]["type"])
    await page.page.keyboard.press("End")
    final = await _shown(page, last)
    assert final == await _state_at(api, key, sid, last)
    assert final["status"] == "idle" and final["conversation"][-1]["text"] == "one two three"
    await screenshots(page, "replay")
