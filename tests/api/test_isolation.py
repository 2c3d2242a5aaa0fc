"""Isolation and roles, table-driven: every operation of docs/openapi.json (read from the
document, so an operation added without an entry in TABLE fails here) against each kind of
caller, on one live app (real uvicorn). The "victim" tenant owns every resource the requests
name; then:

- ``right``: the caller the operation is for (the victim's owner key, the admin token, the
  agent's runtime token, or nobody): the request is valid, it gets the table's success status;
- ``other_tenant``: another tenant's owner key: the victim's ids are 404 (the same answer as for
  an id that does not exist), never 200 or a 403 that says they exist; what it may list or
  stream is its own, and no victim id appears in it;
- ``viewer``: the victim's viewer key: 403 on writes (and on owner-only reads);
- ``agent_token``: the victim agent's runtime token: 403, except on its heartbeat;
- ``stream_token``: a victim stream token: 401 as a bearer token, 200 on the SSE routes it is
  for (as ``?access_token=``); ``session_stream_token``, one for a single session: 200 on that
  session's stream only, 403 on the tenant's;
- ``suspended``: the owner key of a suspended tenant: 403;
- ``revoked``: a revoked owner key of the victim: 401.

Routes without authentication answer every caller alike."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveApp
from tests.conftest import ADMIN_TOKEN

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
CALLERS = ("right", "other_tenant", "viewer", "agent_token", "stream_token",
           "session_stream_token", "suspended", "revoked")
LOOKUP = {"name": "lookup", "input_schema": {"type": "object"}}
NOT_THERE = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a well-formed ULID no resource has


@dataclass
class Victim:
    """The victim tenant's resources, and a key or token for each kind of caller."""

    ids: dict[str, str]  # path parameter -> the victim's resource
    tokens: dict[str, str | None]  # caller -> its bearer token
    tool_use_id: str = ""
    known: set[str] = field(default_factory=set)  # every victim id: none may leak


@dataclass(frozen=True)
class Entry:
    """How to make a valid request, and what the right caller gets. ``auth``: none, admin,
    viewer, member, owner or runtime (the least the operation needs). ``body``: the JSON body
    (built from the victim). ``fresh``: for a write that destroys or changes what other cells
    use, the ids the right caller's request acts on instead (made for it). ``names_victim``:
    the request names a victim resource (path or body), so another tenant gets 404."""

    auth: str
    ok: int = 200
    body: Callable[[Victim], Any] | None = None
    fresh: Callable[[LiveApp, Victim], dict[str, str]] | None = None
    names_victim: bool = True
    sse: bool = False
    ids: Callable[[Victim], dict[str, str]] | None = None  # other path values than v.ids
    ndjson: bool = False  # the body (a str) is sent as application/x-ndjson


def _fresh_key(app: LiveApp, v: Victim) -> dict[str, str]:
    made = app.created("/v1/api_keys", str(v.tokens["right"]), {"name": "spare", "role": "viewer"})
    return {"key_id": made["id"]}


def _fresh_agent(app: LiveApp, v: Victim) -> dict[str, str]:
    return {"agent_id": app.created("/v1/agents", str(v.tokens["right"]), {"name": "spare"})["id"]}


def _fresh_token(app: LiveApp, v: Victim) -> dict[str, str]:
    made = app.created(f"/v1/agents/{v.ids['agent_id']}/tokens", str(v.tokens["right"]), {})
    return {"token_id": made["id"]}


def _fresh_session(app: LiveApp, v: Victim) -> dict[str, str]:
    return {"session_id": app.created("/v1/sessions", str(v.tokens["right"]), {})["id"]}


def _fresh_tenant(app: LiveApp, v: Victim) -> dict[str, str]:
    return {"tenant_id": app.tenant("spare")}


def _fresh_board(app: LiveApp, v: Victim) -> dict[str, str]:
    return {"board_id": app.created("/v1/boards", str(v.tokens["right"]), {"name": "b"})["id"]}


def _fresh_task(app: LiveApp, v: Victim) -> dict[str, str]:
    made = app.created("/v1/tasks", str(v.tokens["right"]),
                       {"board_id": v.ids["board_id"], "title": "spare"})
    return {"task_id": made["id"]}


def _fresh_budget(app: LiveApp, v: Victim) -> dict[str, str]:
    scope = f"session:{_fresh_session(app, v)['session_id']}"
    response = app.request("PUT", f"/v1/budgets/{scope}", v.tokens["right"],
                           json={"limits": {"total": {"tokens": 10}}})
    assert response.status_code == 200, response.text
    return {"scope": scope}


def _export(v: Victim) -> str:
    """A one-session export of no tenant of this server (any tenant may import it)."""
    sid, when = f"ses_{NOT_THERE}", "2025-01-02T03:04:05Z"
    header = {"kind": "session", "format": 1, "session_id": sid, "tenant_id": "ten_elsewhere",
              "last_seq": 1, "exported_at": when, "agent": None}
    created = {"id": "6f1c9a52-3c1e-4a8e-9d4c-2b7f0e5a1d33", "stream_id": sid,
               "stream_type": "session", "seq": 1, "position": 1, "type": "session_created",
               "data": {"type": "session_created", "tenant_id": "ten_elsewhere"}, "meta": {},
               "created_at": when}
    return f"{json.dumps(header)}\n{json.dumps(created)}\n"


def _queue(v: Victim) -> dict[str, str]:
    return {"session_id": v.ids["queue_session"]}


def _tools(v: Victim) -> dict[str, str]:
    return {"session_id": v.ids["tool_session"]}


# One entry per operation of the document.
TABLE: dict[tuple[str, str], Entry] = {
    ("GET", "/healthz"): Entry("none", names_victim=False),
    ("GET", "/readyz"): Entry("none", names_victim=False),
    ("GET", "/metrics"): Entry("none", names_victim=False),
    ("GET", "/v1/openapi.json"): Entry("none", names_victim=False),
    ("POST", "/v1/tenants"): Entry("admin", 201, body=lambda v: {"name": "made"},
                                   names_victim=False),
    ("GET", "/v1/tenants"): Entry("admin", names_victim=False),
    ("GET", "/v1/tenants/{tenant_id}"): Entry("admin"),
    ("POST", "/v1/tenants/{tenant_id}/suspend"): Entry("admin", fresh=_fresh_tenant),
    ("POST", "/v1/tenants/{tenant_id}/resume"): Entry("admin", fresh=_fresh_tenant),
    ("POST", "/v1/api_keys"): Entry("owner", 201, body=lambda v: {"name": "k", "role": "viewer"},
                                    names_victim=False),
    ("GET", "/v1/api_keys"): Entry("owner", names_victim=False),
    ("DELETE", "/v1/api_keys/{key_id}"): Entry("owner", fresh=_fresh_key),
    ("POST", "/v1/agents"): Entry("member", 201, body=lambda v: {"name": "made"},
                                  names_victim=False),
    ("GET", "/v1/agents"): Entry("viewer", names_victim=False),
    ("GET", "/v1/agents/{agent_id}"): Entry("viewer"),
    ("PATCH", "/v1/agents/{agent_id}"): Entry("member", body=lambda v: {"system": "patched"}),
    ("GET", "/v1/agents/{agent_id}/versions"): Entry("viewer"),
    ("POST", "/v1/agents/{agent_id}/archive"): Entry("member", fresh=_fresh_agent),
    ("POST", "/v1/agents/{agent_id}/tokens"): Entry("owner", 201, body=lambda v: {}),
    ("GET", "/v1/agents/{agent_id}/tokens"): Entry("owner"),
    ("DELETE", "/v1/agents/{agent_id}/tokens/{token_id}"): Entry("owner", fresh=_fresh_token),
    ("POST", "/v1/agents/{agent_id}/heartbeat"): Entry("runtime", 202, body=lambda v: {}),
    ("POST", "/v1/sessions"): Entry("member", 201,
                                    body=lambda v: {"agent_id": v.ids["agent_id"]}),
    ("GET", "/v1/sessions"): Entry("viewer", names_victim=False),
    ("GET", "/v1/sessions/{session_id}"): Entry("viewer"),
    ("GET", "/v1/sessions/{session_id}/state"): Entry("viewer"),
    ("POST", "/v1/sessions/{session_id}/messages"): Entry(
        "member", 202, body=lambda v: {"content": "hello"}),
    ("POST", "/v1/sessions/{session_id}/interrupt"): Entry("member"),  # nothing runs: 200
    ("POST", "/v1/sessions/{session_id}/archive"): Entry("member", fresh=_fresh_session),
    ("GET", "/v1/sessions/{session_id}/queue"): Entry("viewer", ids=_queue),
    ("DELETE", "/v1/sessions/{session_id}/queue/{turn_id}"): Entry("member", 202, ids=_queue),
    ("POST", "/v1/sessions/{session_id}/tool_results"): Entry(
        "member", 202, ids=_tools,
        body=lambda v: {"results": [{"tool_use_id": v.tool_use_id, "content": "found"}]}),
    ("GET", "/v1/sessions/{session_id}/events"): Entry("viewer"),
    ("GET", "/v1/sessions/{session_id}/export"): Entry("viewer"),
    ("GET", "/v1/export"): Entry("viewer", names_victim=False),
    ("POST", "/v1/sessions/import"): Entry("member", body=_export, names_victim=False,
                                           ndjson=True),
    ("GET", "/v1/approvals"): Entry("viewer", names_victim=False),
    ("GET", "/v1/approvals/{approval_id}"): Entry("viewer"),
    ("POST", "/v1/approvals/{approval_id}"): Entry("member", 202,
                                                   body=lambda v: {"decision": "deny"}),
    ("POST", "/v1/stream_tokens"): Entry("viewer", 201,
                                         body=lambda v: {"session_id": v.ids["session_id"]}),
    ("GET", "/v1/sessions/{session_id}/stream"): Entry("viewer", sse=True),
    ("GET", "/v1/events/stream"): Entry("viewer", sse=True, names_victim=False),
    ("GET", "/v1/events"): Entry("viewer", names_victim=False),
    ("GET", "/v1/audit"): Entry("viewer", names_victim=False),
    ("POST", "/v1/boards"): Entry("member", 201, body=lambda v: {"name": "made"},
                                  names_victim=False),
    ("GET", "/v1/boards"): Entry("viewer", names_victim=False),
    ("GET", "/v1/boards/{board_id}"): Entry("viewer"),
    ("PATCH", "/v1/boards/{board_id}"): Entry("member", body=lambda v: {"name": "renamed"}),
    ("DELETE", "/v1/boards/{board_id}"): Entry("member", fresh=_fresh_board),
    ("GET", "/v1/boards/{board_id}/snapshot"): Entry("viewer"),
    ("POST", "/v1/tasks"): Entry("member", 201,
                                 body=lambda v: {"board_id": v.ids["board_id"], "title": "t"}),
    ("GET", "/v1/tasks"): Entry("viewer", names_victim=False),
    ("GET", "/v1/tasks/{task_id}"): Entry("viewer"),
    ("PATCH", "/v1/tasks/{task_id}"): Entry("member", body=lambda v: {"title": "renamed"}),
    ("DELETE", "/v1/tasks/{task_id}"): Entry("member", fresh=_fresh_task),
    ("POST", "/v1/tasks/{task_id}/comments"): Entry("member", 201, body=lambda v: {"body": "c"}),
    ("GET", "/v1/tasks/{task_id}/comments"): Entry("viewer"),
    ("GET", "/v1/budgets"): Entry("viewer", names_victim=False),
    ("PUT", "/v1/budgets/{scope}"): Entry(
        "owner", body=lambda v: {"limits": {"total": {"tokens": 1_000_000}}}),
    ("GET", "/v1/budgets/{scope}"): Entry("viewer"),
    ("DELETE", "/v1/budgets/{scope}"): Entry("owner", fresh=_fresh_budget),
    ("GET", "/v1/usage"): Entry("viewer", names_victim=False),
}


def expected(entry: Entry, caller: str) -> int:
    """What ``caller`` must get from the operation."""
    if entry.auth == "none" or caller == "right":
        return entry.ok
    if caller == "revoked":
        return 401
    if caller == "stream_token":
        return entry.ok if entry.sse else 401
    if caller == "session_stream_token":
        if not entry.sse:
            return 401
        return entry.ok if entry.names_victim else 403  # its session's stream, not the tenant's
    if caller == "agent_token":
        return entry.ok if entry.auth == "runtime" else 403  # its heartbeat, nothing else
    if caller == "suspended":
        return 403
    if entry.auth in ("admin", "runtime"):  # an API key (of any tenant and role) is not enough
        return 403
    if caller == "viewer":
        return 403 if entry.auth in ("member", "owner") else entry.ok
    assert caller == "other_tenant"
    return 404 if entry.names_victim else entry.ok


def document_operations() -> list[tuple[str, str]]:
    paths = json.loads(DOCUMENT.read_text())["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def test_every_operation_of_the_document_has_an_entry_and_no_entry_is_stale() -> None:
    operations = set(document_operations())
    assert not operations - TABLE.keys(), "operations without an entry in TABLE"
    assert not TABLE.keys() - operations, "entries of TABLE the document does not have"


def test_each_entry_asks_for_the_role_the_document_says() -> None:
    paths = json.loads(DOCUMENT.read_text())["paths"]
    for (method, path), entry in TABLE.items():
        op = paths[path][method.lower()]
        schemes = {name for one in op.get("security", []) for name in one} - {"streamToken"}
        if not schemes:
            documented = "none"
        elif schemes == {"adminToken"}:
            documented = "admin"
        elif schemes == {"agentToken"}:
            documented = "runtime"
        else:
            role = re.match(r"Role: `(\w+)`", op.get("description", ""))
            assert role is not None, f"{method} {path}: no role in its description"
            documented = role[1]
        assert entry.auth == documented, f"{method} {path}"


# --- the victim, and the callers ---------------------------------------------------------------


def _until(what: str, ready: Callable[[], Any]) -> Any:
    """``ready()``'s first truthy value, polled with a generous deadline."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = ready()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _waiting_session(app: LiveApp, key: str, agent_id: str) -> str:
    """A session whose turn waits (for an approval, or for the client's tool result)."""
    sid: str = app.created("/v1/sessions", key, {"agent_id": agent_id})["id"]
    app.created(f"/v1/sessions/{sid}/messages", key, {"content": "go"})
    _until(f"{sid} requires_action", lambda: app.request(
        "GET", f"/v1/sessions/{sid}", key).json()["status"] == "requires_action")
    return sid


def _status_is(app: LiveApp, token: str, status: int) -> bool:
    return app.request("GET", "/v1/agents", token).status_code == status


@pytest.fixture(scope="module")
def victim(live_app: LiveApp) -> Victim:
    app = live_app
    tenant = app.tenant("victim")
    owner, viewer = app.key(tenant, "owner"), app.key(tenant, "viewer")
    script = [{"tool_calls": [{"name": "lookup", "input": {"word": "x"}}]}, {"text": "ok"}]
    agent = app.created("/v1/agents", owner, {"name": "victim agent"})["id"]
    asking = app.created("/v1/agents", owner, {
        "name": "asks", "model": {"adapter": "scripted", "script": script},
        "tools": [{**LOOKUP, "requires_approval": True}]})["id"]
    tooling = app.created("/v1/agents", owner, {
        "name": "tools", "model": {"adapter": "scripted", "script": script}, "tools": [LOOKUP]})
    runtime = app.created(f"/v1/agents/{agent}/tokens", owner, {})
    session = app.created("/v1/sessions", owner, {})["id"]
    app.created(f"/v1/sessions/{session}/messages", owner, {"content": "secret words"})
    approval_session = _waiting_session(app, owner, asking)
    queue_session = _waiting_session(app, owner, asking)
    queued = app.created(f"/v1/sessions/{queue_session}/messages?mode=enqueue", owner,
                         {"content": "next"})["event"]["data"]["turn_id"]
    tool_session = _waiting_session(app, owner, tooling["id"])
    tool_use_id = _until("the pending tool call", lambda: app.request(
        "GET", f"/v1/sessions/{tool_session}", owner).json()["pending_tool_use_ids"])[0]
    approval = _until("the pending approval", lambda: app.request(
        "GET", f"/v1/approvals?session_id={approval_session}&status=pending",
        owner).json()["data"])[0]["id"]
    board = app.created("/v1/boards", owner, {"name": "victim board"})["id"]
    task = app.created("/v1/tasks", owner, {"board_id": board, "title": "victim task"})["id"]
    app.created(f"/v1/tasks/{task}/comments", owner, {"body": "victim comment"})
    budget = app.request("PUT", f"/v1/budgets/agent:{agent}", owner,
                         json={"limits": {"total": {"tokens": 1000}}})
    assert budget.status_code == 200, budget.text
    stream_token = app.created("/v1/stream_tokens", owner, {})["token"]
    session_token = app.created("/v1/stream_tokens", owner, {"session_id": session})["token"]
    spare = app.created("/v1/api_keys", owner, {"name": "spare", "role": "viewer"})["id"]
    made = app.created("/v1/api_keys", owner, {"name": "to revoke", "role": "owner"})
    revoked = made["key"]
    assert _status_is(app, revoked, 200)  # in the auth cache now: revocation must reach it
    assert app.request("DELETE", f"/v1/api_keys/{made['id']}", owner).status_code == 200
    suspended_tenant = app.tenant("suspended")
    suspended = app.key(suspended_tenant, "owner")
    assert _status_is(app, suspended, 200)  # in the auth cache now: suspension must reach it
    assert app.request("POST", f"/v1/tenants/{suspended_tenant}/suspend",
                       ADMIN_TOKEN).status_code == 200
    _until("the suspension", lambda: _status_is(app, suspended, 403))
    _until("the revocation", lambda: _status_is(app, revoked, 401))
    other = app.key(app.tenant("other"), "owner")
    ids = {"tenant_id": tenant, "key_id": spare, "agent_id": agent, "token_id": runtime["id"],
           "session_id": session, "approval_id": approval, "turn_id": queued,
           "board_id": board, "task_id": task, "scope": f"agent:{agent}",
           "queue_session": queue_session, "tool_session": tool_session}
    known = {*ids.values(), asking, tooling["id"], approval_session, tenant}
    return Victim(ids=ids, tool_use_id=tool_use_id, known=known - {f"agent:{agent}"}, tokens={
        "right": owner, "other_tenant": other, "viewer": viewer,
        "agent_token": runtime["token"], "stream_token": stream_token,
        "session_stream_token": session_token,
        "suspended": suspended, "revoked": revoked})


# --- the matrix --------------------------------------------------------------------------------


def _call(app: LiveApp, method: str, path: str, entry: Entry, token: str | None,
          body_json: Any, params: dict[str, str]) -> tuple[int, str]:
    """(status, body); of an SSE stream, what came within a second (it never ends)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if entry.ndjson:
        response = app.client.request(method, path, content=body_json, params=params,
                                      headers={**headers,
                                               "Content-Type": "application/x-ndjson"})
        return response.status_code, response.text
    if not entry.sse:
        response = app.client.request(method, path, headers=headers, json=body_json,
                                      params=params)
        return response.status_code, response.text
    body = b""
    try:
        with app.client.stream(method, path, headers=headers, params=params,
                               timeout=httpx.Timeout(10, read=1)) as response:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > 100_000:
                    break
    except httpx.ReadTimeout:
        pass  # the replay is over and nothing live came: all there is to see
    return response.status_code, body.decode(errors="replace")


def _cells() -> Iterator[Any]:
    for method, path in document_operations():
        for caller in CALLERS:
            yield pytest.param(method, path, caller, id=f"{method} {path} {caller}")


@pytest.mark.parametrize(("method", "path", "caller"), list(_cells()))
def test_each_caller_gets_what_the_table_says(method: str, path: str, caller: str,
                                             live_app: LiveApp, victim: Victim) -> None:
    entry = TABLE.get((method, path))
    if entry is None:
        pytest.fail(f"{method} {path} has no entry in TABLE: say who may call it")
    values = {**victim.ids, **(entry.ids(victim) if entry.ids else {})}
    if caller == "right" and entry.fresh is not None:
        values.update(entry.fresh(live_app, victim))
    token = _token(entry, caller, victim)
    params = {}
    if entry.sse and caller in ("stream_token", "session_stream_token"):
        params, token = {"access_token": str(victim.tokens[caller])}, None
    sent = entry.body(victim) if entry.body else None
    status, body = _call(live_app, method, path.format(**values), entry, token, sent, params)
    want = expected(entry, caller)
    assert status == want, f"{caller}: {method} {path} answered {status}, not {want}: {body}"
    if caller == "other_tenant" and entry.auth != "none":
        sent_ids = path.format(**values) + json.dumps(sent)  # a 404 may name what was asked
        leaked = sorted(i for i in victim.known if i in body and i not in sent_ids)
        assert not leaked, f"{method} {path} showed another tenant the victim's {leaked}"
    if caller == "other_tenant" and want == 404:
        # ...and the same 404 as for an id that does not exist: existence is not revealed.
        missing = {k: re.sub(r"_[0-9A-Z]{26}$", f"_{NOT_THERE}", v) for k, v in values.items()}
        unknown, _ = _call(live_app, method, path.format(**missing), entry, token,
                           _with_missing_ids(sent, values, missing), params)
        assert unknown == 404


def _token(entry: Entry, caller: str, victim: Victim) -> str | None:
    if caller != "right":
        return victim.tokens[caller]
    return {"none": None, "admin": ADMIN_TOKEN, "runtime": victim.tokens["agent_token"]}.get(
        entry.auth, victim.tokens["right"])


def _with_missing_ids(body: Any, values: dict[str, str], missing: dict[str, str]) -> Any:
    if body is None:
        return None
    text = json.dumps(body)
    for key, value in values.items():
        text = text.replace(value, missing[key])
    return json.loads(text)
