"""/v1/boards and /v1/tasks end to end: CRUD, validation naming the field, tenant isolation,
dependencies (blocked, unblocked by the engine, cycles), comments, the board snapshot and the
list filters from the task view (read-your-writes with min_position), the task tools in a
scripted turn, and the live board feed over SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from engine.engine import Engine
from engine.runtime.tools import ServerTools, ToolContext
from tests.api.conftest import Api, Live
from tests.helpers import assert_error, log, new_board, new_task, say, session, settle


async def patch(api: Api, key: str, task_id: str, **fields: Any) -> dict[str, Any]:
    response = await api.request("PATCH", f"/v1/tasks/{task_id}", key, json=fields)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def get_task(api: Api, key: str, task_id: str) -> dict[str, Any]:
    response = await api.request("GET", f"/v1/tasks/{task_id}", key)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def new_agent(api: Api, key: str, **config: Any) -> str:
    response = await api.request("POST", "/v1/agents", key, json={"name": "worker", **config})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def stream_of(api: Api, tenant_id: str, stream_id: str) -> list[Any]:
    engine: Engine = api.app.state.engine
    return await engine.store.read_whole_stream(stream_id, tenant_id=tenant_id)


def position(response: httpx.Response) -> int:
    return int(response.headers["spool-position"])


# --- boards ------------------------------------------------------------------------------------


async def test_board_create_list_get_update_delete(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    created = await api.request("POST", "/v1/boards", key,
                                json={"name": "Launch", "description": "v1"})
    assert created.status_code == 201, created.text
    board = created.json()
    assert board["id"].startswith("brd_") and board["name"] == "Launch"
    assert board["description"] == "v1" and board["last_seq"] == 1
    bid = board["id"]
    assert (await api.request("GET", f"/v1/boards/{bid}", key)).json() == board

    patched = await api.request("PATCH", f"/v1/boards/{bid}", key,
                                json={"name": "Launch v2", "description": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Launch v2" and patched.json()["description"] is None
    same = await api.request("PATCH", f"/v1/boards/{bid}", key, json={"name": "Launch v2"})
    assert same.status_code == 200 and "spool-position" not in same.headers  # nothing changed

    made = await api.request("POST", "/v1/boards", key, json={"name": "Other"})
    other = made.json()["id"]
    listed = await api.request("GET", f"/v1/boards?limit=1&min_position={position(made)}", key)
    page = listed.json()
    assert [b["id"] for b in page["data"]] == [bid] and page["has_more"]
    assert page["data"][0]["name"] == "Launch v2"
    rest = (await api.request("GET", f"/v1/boards?after={page['next_cursor']}", key)).json()
    assert [b["id"] for b in rest["data"]] == [other]

    deleted = await api.request("DELETE", f"/v1/boards/{bid}", key)
    assert deleted.status_code == 200 and deleted.json() == {"id": bid, "deleted": True}
    for method, body in [("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)]:
        assert_error(await api.request(method, f"/v1/boards/{bid}", key, json=body), 404,
                     "not_found")
    listed = await api.request("GET", f"/v1/boards?min_position={position(deleted)}", key)
    assert [b["id"] for b in listed.json()["data"]] == [other]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "b", "colour": "red"}, "colour"),
    ({"name": "b", "description": 3}, "description"),
])
async def test_invalid_board_names_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    key = await api.key(await api.tenant(), "member")
    error = assert_error(await api.request("POST", "/v1/boards", key, json=body), 422,
                         "invalid_request")
    assert error["details"]["field"] == field


# --- tasks -------------------------------------------------------------------------------------


async def test_task_create_get_update_delete(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid, agent = await new_board(api, key), await new_agent(api, key)
    created = await api.request("POST", "/v1/tasks", key, json={
        "board_id": bid, "title": "Write the docs", "description": "all of them",
        "priority": "high", "assignee_id": agent, "due_at": "2030-01-02T10:00:00+02:00"})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["id"].startswith("tsk_") and task["status"] == "inbox"
    assert task["resume_status"] is None and task["dependencies"] == []
    assert task["priority"] == "high" and task["assignee_id"] == agent
    assert task["due_at"] == "2030-01-02T08:00:00Z"  # kept in UTC
    tid = task["id"]
    assert await get_task(api, key, tid) == task

    updated = await patch(api, key, tid, title="Write the README", assignee_id=None,
                          priority="high", status="in_progress")
    assert updated["title"] == "Write the README" and updated["assignee_id"] is None
    assert updated["status"] == "in_progress" and updated["last_seq"] == 2
    events = await stream_of(api, tenant, tid)
    assert [e.type for e in events] == ["task_created", "task_updated"]
    assert bytes(events[1].data) == (b'{"type":"task_updated","title":"Write the README",'
                              b'"status":"in_progress","assignee_id":null}')  # what changed
    unchanged = await api.request("PATCH", f"/v1/tasks/{tid}", key, json={"priority": "high"})
    assert unchanged.status_code == 200 and "spool-position" not in unchanged.headers

    deleted = await api.request("DELETE", f"/v1/tasks/{tid}", key)
    assert deleted.status_code == 200 and deleted.json() == {"id": tid, "deleted": True}
    for method, path, body in [("GET", f"/v1/tasks/{tid}", None),
                               ("PATCH", f"/v1/tasks/{tid}", {"title": "x"}),
                               ("DELETE", f"/v1/tasks/{tid}", None),
                               ("POST", f"/v1/tasks/{tid}/comments", {"body": "hi"}),
                               ("GET", f"/v1/tasks/{tid}/comments", None)]:
        assert_error(await api.request(method, path, key, json=body), 404, "not_found")
    listed = await api.request("GET", f"/v1/tasks?min_position={position(deleted)}", key)
    assert listed.json()["data"] == []


async def test_a_task_moves_between_boards_and_a_retried_create_returns_the_first(
    api: Api,
) -> None:
    key = await api.key(await api.tenant(), "member")
    first, second = await new_board(api, key, "a"), await new_board(api, key, "b")
    once = {"Idempotency-Key": "create-1"}
    made = await api.request("POST", "/v1/tasks", key, json={"board_id": first, "title": "t"},
                             headers=once)
    tid = made.json()["id"]
    moved = await patch(api, key, tid, board_id=second)
    assert moved["board_id"] == second
    again = await api.request("POST", "/v1/tasks", key, json={"board_id": first, "title": "t"},
                              headers=once)
    assert again.status_code == 201 and again.json() == made.json()
    listed = await api.request("GET", f"/v1/tasks?min_position={position(again)}", key)
    assert [t["id"] for t in listed.json()["data"]] == [tid]


@pytest.mark.parametrize(("fields", "status", "field"), [
    ({"title": None}, 422, "title"),
    ({"title": ""}, 422, "title"),
    ({"title": "x" * 501}, 422, "title"),
    ({"status": "someday"}, 422, "status"),
    ({"priority": 2}, 422, "priority"),
    ({"due_at": "2030-01-02T10:00:00"}, 422, "due_at"),  # no offset
    ({"due_at": "tomorrow"}, 422, "due_at"),
    ({"dependencies": "tsk_1"}, 422, "dependencies"),
    ({"colour": "red"}, 422, "colour"),
    ({"board_id": "brd_01HZZZZZZZZZZZZZZZZZZZZZZZ"}, 404, "board_id"),
    ({"board_id": "nonsense"}, 404, "board_id"),
    ({"assignee_id": "agt_01HZZZZZZZZZZZZZZZZZZZZZZZ"}, 404, "assignee_id"),
    ({"dependencies": ["tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ"]}, 404, "dependencies[0]"),
    ({"dependencies": ["nope"]}, 404, "dependencies[0]"),
])
async def test_invalid_task_names_the_field(
    api: Api, fields: dict[str, Any], status: int, field: str,
) -> None:
    key = await api.key(await api.tenant(), "member")
    bid = await new_board(api, key)
    body = {"board_id": bid, "title": "t", **fields}
    body = {name: value for name, value in body.items() if value is not None}
    error = assert_error(await api.request("POST", "/v1/tasks", key, json=body), status,
                         "invalid_request" if status != 404 else "not_found")
    assert error["details"]["field"] == field, error
    assert (await api.request("GET", "/v1/tasks?min_position=1", key)).json()["data"] == []


async def test_patch_errors_name_the_field_and_write_nothing(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid = await new_board(api, key)
    dep, tid = (await new_task(api, key, bid))["id"], (await new_task(api, key, bid))["id"]
    archived = await new_agent(api, key)
    await api.request("POST", f"/v1/agents/{archived}/archive", key)
    for fields, status, field in [
        ({"dependencies": [dep, dep]}, 400, "dependencies[1]"),
        ({"dependencies": [tid]}, 400, "dependencies[0]"),
        ({"board_id": "brd_01HZZZZZZZZZZZZZZZZZZZZZZZ"}, 404, "board_id"),
        ({"assignee_id": archived}, 409, "assignee_id"),
        ({"title": 5}, 422, "title"),
        ({"status": None}, 422, "status"),
    ]:
        response = await api.request("PATCH", f"/v1/tasks/{tid}", key, json=fields)
        assert response.status_code == status, (fields, response.text)
        assert response.json()["error"]["details"]["field"] == field
    assert len(await stream_of(api, tenant, tid)) == 1


async def test_another_tenants_boards_tasks_and_agents_are_404(api: Api) -> None:
    key_a = await api.key(await api.tenant("a"), "member")
    key_b = await api.key(await api.tenant("b"), "member")
    bid = await new_board(api, key_a)
    tid = (await new_task(api, key_a, bid))["id"]
    agent = await new_agent(api, key_a)
    for method, path, body in [
        ("GET", f"/v1/boards/{bid}", None),
        ("PATCH", f"/v1/boards/{bid}", {"name": "mine"}),
        ("DELETE", f"/v1/boards/{bid}", None),
        ("GET", f"/v1/boards/{bid}/snapshot", None),
        ("GET", f"/v1/tasks/{tid}", None),
        ("PATCH", f"/v1/tasks/{tid}", {"title": "mine"}),
        ("DELETE", f"/v1/tasks/{tid}", None),
        ("POST", f"/v1/tasks/{tid}/comments", {"body": "mine"}),
        ("GET", f"/v1/tasks/{tid}/comments", None),
    ]:
        assert_error(await api.request(method, path, key_b, json=body), 404, "not_found")
    own_board = await new_board(api, key_b)
    for fields, field in [({"board_id": bid}, "board_id"),
                          ({"board_id": own_board, "dependencies": [tid]}, "dependencies[0]"),
                          ({"board_id": own_board, "assignee_id": agent}, "assignee_id")]:
        error = assert_error(await api.request("POST", "/v1/tasks", key_b,
                                               json={"title": "t", **fields}), 404, "not_found")
        assert error["details"] == {"field": field}
    assert (await api.request("GET", "/v1/tasks?min_position=1", key_b)).json()["data"] == []
    boards = (await api.request("GET", "/v1/boards?min_position=1", key_b)).json()["data"]
    assert [b["id"] for b in boards] == [own_board]
    assert (await get_task(api, key_a, tid))["title"] == "t"  # untouched


async def test_viewers_read_members_write(api: Api) -> None:
    tenant = await api.tenant()
    member, viewer = await api.key(tenant, "member"), await api.key(tenant, "viewer")
    bid = await new_board(api, member)
    tid = (await new_task(api, member, bid))["id"]
    assert (await api.request("GET", f"/v1/tasks/{tid}", viewer)).status_code == 200
    assert (await api.request("GET", f"/v1/boards/{bid}/snapshot", viewer)).status_code == 200
    for method, path, body in [("POST", "/v1/boards", {"name": "x"}),
                               ("POST", "/v1/tasks", {"board_id": bid, "title": "x"}),
                               ("PATCH", f"/v1/tasks/{tid}", {"title": "x"}),
                               ("DELETE", f"/v1/tasks/{tid}", None),
                               ("POST", f"/v1/tasks/{tid}/comments", {"body": "x"})]:
        assert_error(await api.request(method, path, viewer, json=body), 403, "forbidden")


# --- dependencies ------------------------------------------------------------------------------


async def test_a_task_is_blocked_until_its_dependencies_are_done_then_unblocks(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid = await new_board(api, key)
    first, second = (await new_task(api, key, bid))["id"], (await new_task(api, key, bid))["id"]
    task = await new_task(api, key, bid, status="in_progress", dependencies=[first, second])
    tid = task["id"]
    assert task["status"] == "blocked" and task["resume_status"] == "in_progress"

    # While blocked: a new status is where it goes afterwards; done is refused.
    error = assert_error(await api.request("PATCH", f"/v1/tasks/{tid}", key,
                                           json={"status": "done"}), 409, "conflict")
    assert error["details"] == {"field": "status", "blocked_by": [first, second]}
    moved = await patch(api, key, tid, status="review")
    assert (moved["status"], moved["resume_status"]) == ("blocked", "review")

    await patch(api, key, first, status="done")
    await asyncio.sleep(0.2)
    assert (await get_task(api, key, tid))["status"] == "blocked"  # one still open
    await patch(api, key, second, status="done")

    async def unblocked() -> bool:
        return (await get_task(api, key, tid))["status"] == "review"

    await eventually(unblocked)
    events = await stream_of(api, tenant, tid)
    last = events[-1]
    assert last.type == "task_updated" and bytes(last.data) == (
        b'{"type":"task_updated","status":"review","resume_status":null,'
        b'"cause":"dependencies_done"}')
    assert b'"actor":"spool:tasks"' in bytes(last.meta)

    # A dependency that is no longer done blocks its unfinished dependents again ...
    await patch(api, key, second, status="in_progress")

    async def blocked_again() -> bool:
        got = await get_task(api, key, tid)
        return (got["status"], got["resume_status"]) == ("blocked", "review")

    await eventually(blocked_again)
    assert b'"cause":"dependency_not_done"' in bytes((await stream_of(api, tenant, tid))[-1].data)
    # ... and a deleted one no longer holds anyone back.
    await api.request("DELETE", f"/v1/tasks/{second}", key)
    await eventually(unblocked)
    assert (await get_task(api, key, tid))["dependencies"] == [first, second]


async def test_dependencies_changed_by_patch_block_and_unblock_at_once(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    bid = await new_board(api, key)
    dep = (await new_task(api, key, bid))["id"]
    done = (await new_task(api, key, bid, status="done"))["id"]
    tid = (await new_task(api, key, bid, status="in_progress"))["id"]
    blocked = await patch(api, key, tid, dependencies=[done, dep])
    assert (blocked["status"], blocked["resume_status"]) == ("blocked", "in_progress")
    freed = await patch(api, key, tid, dependencies=[done])
    assert (freed["status"], freed["resume_status"]) == ("in_progress", None)
    # Blocked by hand: stays blocked when its dependencies are done.
    by_hand = await patch(api, key, tid, status="blocked", dependencies=[dep])
    assert (by_hand["status"], by_hand["resume_status"]) == ("blocked", None)
    await patch(api, key, dep, status="done")
    await asyncio.sleep(0.3)
    assert (await get_task(api, key, tid))["status"] == "blocked"
    # A done task is not blocked by a new dependency.
    finished = await new_task(api, key, bid, status="done")
    again = await patch(api, key, finished["id"], dependencies=[tid])
    assert again["status"] == "done"
    assert_error(await api.request("POST", "/v1/tasks", key, json={
        "board_id": bid, "title": "t", "status": "done", "dependencies": [tid]}), 409, "conflict")


async def test_a_dependency_cycle_is_400_naming_the_field(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    bid = await new_board(api, key)
    a = (await new_task(api, key, bid))["id"]
    b = (await new_task(api, key, bid, dependencies=[a]))["id"]
    c = (await new_task(api, key, bid, dependencies=[b]))["id"]
    other = (await new_task(api, key, bid))["id"]
    error = assert_error(await api.request("PATCH", f"/v1/tasks/{a}", key,
                                           json={"dependencies": [other, c]}),
                         400, "invalid_request")
    assert error["details"] == {"field": "dependencies[1]"} and c in error["message"]
    error = assert_error(await api.request("PATCH", f"/v1/tasks/{a}", key,
                                           json={"dependencies": [a]}), 400, "invalid_request")
    assert error["details"] == {"field": "dependencies[0]"}
    assert (await get_task(api, key, a))["dependencies"] == []
    await patch(api, key, c, dependencies=[])  # the chain is cut: now a may wait for c
    assert (await patch(api, key, a, dependencies=[c]))["dependencies"] == [c]


async def test_two_concurrent_halves_of_a_cycle_cannot_both_succeed(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    bid = await new_board(api, key)
    for _ in range(5):
        a = (await new_task(api, key, bid))["id"]
        b = (await new_task(api, key, bid))["id"]
        results = await asyncio.gather(
            api.request("PATCH", f"/v1/tasks/{a}", key, json={"dependencies": [b]}),
            api.request("PATCH", f"/v1/tasks/{b}", key, json={"dependencies": [a]}),
        )
        assert sorted(r.status_code for r in results) == [200, 400], [r.text for r in results]


# --- comments ----------------------------------------------------------------------------------


async def test_comments_are_events_on_the_task_and_page_by_id(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    tid = (await new_task(api, key, await new_board(api, key)))["id"]
    posted = []
    for text in ("first", "second", "third"):
        response = await api.request("POST", f"/v1/tasks/{tid}/comments", key,
                                     json={"body": text})
        assert response.status_code == 201, response.text
        assert int(response.headers["spool-position"]) > 0
        posted.append(response.json())
    assert posted[0]["id"].startswith("cmt_") and posted[0]["task_id"] == tid
    assert posted[0]["body"] == "first" and posted[0]["author"].startswith("key_")
    page = (await api.request("GET", f"/v1/tasks/{tid}/comments?limit=2", key)).json()
    assert page["data"] == posted[:2] and page["has_more"]
    rest = (await api.request("GET", f"/v1/tasks/{tid}/comments?after={page['next_cursor']}",
                              key)).json()
    assert rest["data"] == posted[2:] and not rest["has_more"]
    assert (await get_task(api, key, tid))["last_seq"] == 4
    assert [e.type for e in await stream_of(api, tenant, tid)][1:] == ["task_commented"] * 3
    once = {"Idempotency-Key": "c-1"}
    first = await api.request("POST", f"/v1/tasks/{tid}/comments", key, json={"body": "x"},
                              headers=once)
    again = await api.request("POST", f"/v1/tasks/{tid}/comments", key, json={"body": "x"},
                              headers=once)
    assert again.json() == first.json()
    error = assert_error(await api.request("POST", f"/v1/tasks/{tid}/comments", key,
                                           json={"body": ""}), 422, "invalid_request")
    assert error["details"]["field"] == "body"


# --- the view: list, snapshot, read-your-writes ------------------------------------------------


async def test_list_filters_by_status_assignee_and_board(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    one, two = await new_board(api, key, "one"), await new_board(api, key, "two")
    agent = await new_agent(api, key)
    a = (await new_task(api, key, one, assignee_id=agent))["id"]
    b = (await new_task(api, key, one, status="review"))["id"]
    c = (await new_task(api, key, two, status="review", assignee_id=agent))
    last = await api.request("GET", f"/v1/tasks/{c['id']}", key)  # (a read: no position)
    assert last.status_code == 200
    made = await api.request("POST", "/v1/tasks", key, json={"board_id": two, "title": "d"})
    at = position(made)

    async def ids(query: str) -> list[str]:
        response = await api.request("GET", f"/v1/tasks?min_position={at}&{query}", key)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]]

    assert await ids("") == [a, b, c["id"], made.json()["id"]]
    assert await ids("status=review") == [b, c["id"]]
    assert await ids(f"assignee_id={agent}") == [a, c["id"]]
    assert await ids(f"board_id={one}") == [a, b]
    assert await ids(f"board_id={two}&status=review&assignee_id={agent}") == [c["id"]]
    page = (await api.request("GET", f"/v1/tasks?min_position={at}&limit=3", key)).json()
    assert page["has_more"] and page["next_cursor"] == c["id"]
    for query, field in [("status=later", "status"), ("after=xyz", "after"),
                         ("limit=0", "limit"), ("min_position=-1", "min_position")]:
        error = assert_error(await api.request("GET", f"/v1/tasks?{query}", key), 400,
                             "invalid_request")
        assert error["details"]["field"] == field


async def test_the_board_snapshot_groups_tasks_by_status_with_the_blocked_ones(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    bid, elsewhere = await new_board(api, key), await new_board(api, key, "elsewhere")
    low = (await new_task(api, key, bid, title="low", priority="low"))["id"]
    urgent = (await new_task(api, key, bid, title="urgent", priority="urgent"))["id"]
    doing = (await new_task(api, key, bid, status="in_progress"))["id"]
    waiting = (await new_task(api, key, bid, dependencies=[doing, low]))["id"]
    by_hand = (await new_task(api, key, bid, status="blocked"))["id"]
    await new_task(api, key, elsewhere)
    made = await api.request("POST", "/v1/tasks", key,
                             json={"board_id": bid, "title": "done", "status": "done"})
    response = await api.request(
        "GET", f"/v1/boards/{bid}/snapshot?min_position={position(made)}", key)
    assert response.status_code == 200, response.text
    snapshot = response.json()
    assert snapshot["board"]["id"] == bid and snapshot["position"] >= position(made)
    assert snapshot["counts"] == {"inbox": 2, "in_progress": 1, "review": 0, "done": 1,
                                  "blocked": 2, "total": 6}
    tasks = snapshot["tasks"]
    assert [t["id"] for t in tasks["inbox"]] == [urgent, low]  # most urgent first
    assert [t["id"] for t in tasks["in_progress"]] == [doing]
    assert tasks["review"] == [] and [t["title"] for t in tasks["done"]] == ["done"]
    assert {t["id"] for t in tasks["blocked"]} == {waiting, by_hand}
    assert snapshot["blocked"] == [
        {"task_id": waiting, "blocked_by": [doing, low], "resume_status": "inbox"},
        {"task_id": by_hand, "blocked_by": [], "resume_status": None},
    ]
    limited = await api.request("GET", f"/v1/boards/{bid}/snapshot?limit=1", key)
    assert [t["id"] for t in limited.json()["tasks"]["inbox"]] == [urgent]
    assert limited.json()["counts"]["inbox"] == 2
    missing = "brd_01HZZZZZZZZZZZZZZZZZZZZZZZ"
    assert_error(await api.request("GET", f"/v1/boards/{missing}/snapshot", key), 404,
                 "not_found")


async def test_reads_wait_for_min_position(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    engine: Engine = api.app.state.engine
    bid = await new_board(api, key)
    for _ in range(5):  # read-your-writes: each new task is in the list at once
        made = await api.request("POST", "/v1/tasks", key, json={"board_id": bid, "title": "t"})
        listed = await api.request("GET", f"/v1/tasks?min_position={position(made)}", key)
        assert made.json()["id"] in [t["id"] for t in listed.json()["data"]]
    beyond = await engine.store.head() + 1  # no write's: 400 (503 in test_view_waits.py)
    for path in (f"/v1/tasks?min_position={beyond}", f"/v1/boards?min_position={beyond}",
                 f"/v1/boards/{bid}/snapshot?min_position={beyond}"):
        response = await api.request("GET", path, key)
        error = assert_error(response, 400, "invalid_request")
        assert error["details"] == {"field": "min_position"}


async def test_deleting_a_board_deletes_its_tasks(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid, kept = await new_board(api, key), await new_board(api, key, "kept")
    doomed = [(await new_task(api, key, bid))["id"] for _ in range(3)]
    survivor = (await new_task(api, key, kept, dependencies=[doomed[0]]))["id"]
    await api.request("DELETE", f"/v1/boards/{bid}", key)

    async def gone() -> bool:
        codes = [(await api.request("GET", f"/v1/tasks/{t}", key)).status_code for t in doomed]
        return codes == [404] * 3

    await eventually(gone)
    last = (await stream_of(api, tenant, doomed[0]))[-1]
    assert bytes(last.data) == b'{"type":"task_deleted","cause":"board_deleted"}'

    async def unblocked() -> bool:
        return (await get_task(api, key, survivor))["status"] == "inbox"

    await eventually(unblocked)
    error = assert_error(await api.request("POST", "/v1/tasks", key,
                                           json={"board_id": bid, "title": "t"}), 404,
                         "not_found")
    assert error["details"] == {"field": "board_id"}


# --- the task tools in a turn, and the live feed -----------------------------------------------


async def test_an_agent_creates_and_updates_tasks_with_its_tools(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid = await new_board(api, key)
    existing = (await new_task(api, key, bid, title="Existing"))["id"]
    tools = [{"name": "task_create", "executor": "server"},
             {"name": "task_update", "executor": "server"}]
    script = [
        {"tool_calls": [
            {"name": "task_create", "input": {"board_id": bid, "title": "From the agent",
                                              "priority": "urgent", "dependencies": [existing]}},
            {"name": "task_update", "input": {"task_id": existing, "status": "review"}},
            {"name": "task_update", "input": {"task_id": existing, "status": "later"}},
            {"name": "task_create", "input": {"board_id": bid, "title": "x", "assignee_id":
                                              "agt_01HZZZZZZZZZZZZZZZZZZZZZZZ"}},
        ]},
        {"text": "done"},
    ]
    agent = await new_agent(api, key, model={"adapter": "scripted", "script": script},
                            tools=tools)
    sid = await session(api, key, agent)
    await say(api, key, sid, "plan the launch")
    await settle(api, key, sid, "idle")
    results = {e["data"]["tool_use_id"]: e["data"] for e in await log(api, key, sid)
               if e["type"] == "tool_result"}
    created, updated, invalid, unknown = (results[f"toolu_0_{i}"] for i in range(4))
    assert not created.get("is_error") and not updated.get("is_error")
    made = json.loads(created["content"][0]["text"])
    assert made["title"] == "From the agent" and made["status"] == "blocked"
    assert json.loads(updated["content"][0]["text"])["status"] == "review"
    # Refused against the built-in schema as the call streamed in, before any tool ran.
    assert invalid["is_error"] and "at status" in invalid["content"][0]["text"]
    assert unknown["is_error"] and "(assignee_id)" in unknown["content"][0]["text"]
    # Written through the same path as the API: the same task, the same events.
    assert (await get_task(api, key, made["id"]))["priority"] == "urgent"
    [event] = await stream_of(api, tenant, made["id"])
    assert event.type == "task_created" and b'"actor":"wrk_' in bytes(event.meta)


async def test_a_task_tool_run_twice_for_one_call_changes_the_task_once(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    bid = await new_board(api, key)
    engine: Engine = api.app.state.engine
    tools = ServerTools(engine.store, engine.tasks)  # as a worker builds them
    call = ToolContext(tenant, "agt_x", "ses_x", "wrk_x", tool_use_id="toolu_1_0")
    first = await tools.run("task_create", {"board_id": bid, "title": "once"}, call, 5)
    again = await tools.run("task_create", {"board_id": bid, "title": "once"}, call, 5)
    assert not first.is_error and first.text == again.text
    other = ToolContext(tenant, "agt_x", "ses_x", "wrk_x", tool_use_id="toolu_1_1")
    assert (await tools.run("task_create", {"board_id": bid, "title": "once"}, other, 5)).text \
        != first.text
    tid = json.loads(first.text)["id"]
    update = {"task_id": tid, "status": "done"}
    for _ in range(2):
        assert json.loads((await tools.run("task_update", update, call, 5)).text)[
            "status"] == "done"
    assert len(await stream_of(api, tenant, tid)) == 2


async def test_the_task_stream_is_a_live_board_feed(live: Live) -> None:
    key = await live.member_key()
    bid = (await live.post("/v1/boards", key, {"name": "b"})).json()["id"]
    async with live.stream("/v1/events/stream?stream_type=task", key) as stream:
        assert (await anext(stream)).retry is not None
        tid = (await live.post("/v1/tasks", key, {"board_id": bid, "title": "t"})).json()["id"]
        await live.client.patch(f"/v1/tasks/{tid}", json={"status": "done"},
                                headers={"Authorization": f"Bearer {key}"})
        await live.post(f"/v1/tasks/{tid}/comments", key, {"body": "shipped"})
        got = []
        async with asyncio.timeout(30):
            async for frame in stream:
                if frame.event is not None:
                    got.append(frame)
                if len(got) == 3:
                    break
    assert [f.event for f in got] == ["task_created", "task_updated", "task_commented"]
    assert {f.envelope["stream_id"] for f in got} == {tid}
