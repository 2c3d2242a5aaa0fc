"""Every operation of the API through the SDK's resources, against the live server over a real
socket, once with the sync ``Client`` and once with the ``AsyncClient`` (the same walk): each
answer typed, writes carrying their position, lists paging by themselves, ``send`` ending at
the turn's ``session_done``. The walk records the operations it called: all of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import spool
from spool import _core
from spool._operations import OPERATIONS, PENDING
from tests.helpers import LOOKUP
from tests.spool.conftest import Flavour

SCRIPT = [{"text": "let me look", "tool_calls": [{"name": "lookup", "input": {"word": "x"}}]},
          {"text": "found it"}]


def record(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The operation ids of every call the SDK builds from now on."""
    called: set[str] = set()
    build = _core.call

    def recording(settings: _core.Settings, operation_id: str, *args: Any,
                  **kwargs: Any) -> _core.Call:
        called.add(operation_id)
        return build(settings, operation_id, *args, **kwargs)

    monkeypatch.setattr(_core, "call", recording)
    return called


async def pending_tool_uses(flavour: Flavour, client: Any, session_id: str) -> list[str]:
    """The session's tool uses waiting for a client's result, once there are some."""
    async with asyncio.timeout(30):
        while True:
            session = await flavour.done(client.sessions.get(session_id))
            if session.status == "requires_action" and session.pending_tool_use_ids:
                return list(session.pending_tool_use_ids)
            await asyncio.sleep(0.02)


async def test_every_operation_has_been_called_through_the_client(
        flavour: Flavour, monkeypatch: pytest.MonkeyPatch) -> None:
    called = record(monkeypatch)
    admin = flavour.client()
    owner, acting = await admin_walk(flavour, admin)
    agent = await agents_walk(flavour, owner)
    session_id = await sessions_walk(flavour, owner, agent.id)
    await send_walk(flavour, owner)
    await log_walk(flavour, owner, session_id)
    await tasks_walk(flavour, owner)
    await budgets_walk(flavour, owner)
    archived = await flavour.done(owner.agents.archive(agent.id))
    assert archived.status == "archived" and archived.position is not None
    for client in (admin, acting, owner):
        await flavour.close(client)
    assert set(OPERATIONS) - PENDING - called == set()


async def admin_walk(flavour: Flavour, admin: Any) -> tuple[Any, Any]:
    done = flavour.done
    assert (await done(admin.health())).status == "ok"
    assert isinstance(await done(admin.ready()), spool.Readiness)
    assert "# TYPE" in await done(admin.metrics())
    assert (await done(admin.openapi()))["openapi"].startswith("3.1")
    tenant = await done(admin.tenants.create(name=f"walk-{flavour.name}"))
    assert isinstance(tenant, spool.Tenant) and tenant.status == "active"
    assert tenant.id in [t.id for t in await flavour.items(admin.tenants.list(limit=2))]
    assert (await done(admin.tenants.get(tenant.id))).name == tenant.name
    assert (await done(admin.tenants.suspend(tenant.id))).status == "suspended"
    assert (await done(admin.tenants.resume(tenant.id))).status == "active"
    acting = flavour.client(tenant=tenant.id)  # the admin token acting on the tenant
    key = await done(acting.api_keys.create(name="owner", role="owner"))
    assert key.key is not None and key.key.startswith("spk_")
    spare = await done(acting.api_keys.create(name="spare"))
    assert spare.role == "member"
    assert {key.id, spare.id} <= {k.id for k in await flavour.items(acting.api_keys.list())}
    assert (await done(acting.api_keys.revoke(spare.id))).revoked_at is not None
    return flavour.client(key.key), acting


async def agents_walk(flavour: Flavour, owner: Any) -> Any:
    done = flavour.done
    agent = await done(owner.agents.create(
        name="helper", model={"adapter": "scripted", "script": SCRIPT},
        tools=[{**LOOKUP, "requires_approval": True}]))
    assert isinstance(agent, spool.Agent) and agent.position is not None
    assert agent.tools[0].name == "lookup" and agent.model.adapter == "scripted"
    read = await done(owner.agents.get(agent.id, min_position=agent.position))
    assert read.view is not None  # the agent view has caught up with the create
    updated = await done(owner.agents.update(agent.id, system="be brief"))
    assert (updated.version, updated.system) == (2, "be brief")
    assert [v.version for v in await flavour.items(owner.agents.versions(agent.id))] == [1, 2]
    listed = await flavour.items(owner.agents.list(status="active",
                                                   min_position=updated.position))
    assert [a.id for a in listed] == [agent.id]
    assert await flavour.items(owner.agents.list(status="archived")) == []
    token = await done(owner.agents.tokens.create(agent.id, name="runtime"))
    assert token.token is not None and token.token.startswith("spt_")
    assert [t.id for t in await flavour.items(owner.agents.tokens.list(agent.id))] == [token.id]
    beat = await done(owner.agents.heartbeat(agent.id, note="up", token=token.token))
    assert beat.type == "agent_heartbeat" and beat.position is not None
    assert (await done(owner.agents.tokens.revoke(agent.id, token.id))).revoked_at is not None
    return agent


async def sessions_walk(flavour: Flavour, owner: Any, agent_id: str) -> str:
    """A turn with everything: an approval, a queued turn removed, a client tool's result."""
    done = flavour.done
    session = await done(owner.sessions.create(agent_id=agent_id, title="walk",
                                               metadata={"k": "v"}))
    assert (session.status, session.metadata, session.position is not None) == (
        "idle", {"k": "v"}, True)
    listed = await flavour.items(owner.sessions.list(agent_id=agent_id,
                                                     min_position=session.position))
    assert [s.id for s in listed] == [session.id]
    first = await done(owner.sessions.submit(session.id, "look up x"))
    assert (first.type, first.position is not None) == ("user_message", True)
    stream = owner.sessions.stream(session.id, after=first.seq)
    await flavour.items(stream, until="approval_requested")
    queued = await done(owner.sessions.submit(session.id, [{"type": "text", "text": "later"}],
                                              mode="enqueue"))
    turns = await done(owner.sessions.queue(session.id))
    assert [t.turn_id for t in turns] == [queued.data["turn_id"]]
    removed = await done(owner.sessions.remove_queued(session.id, queued.data["turn_id"]))
    assert removed.position is not None
    [approval] = await flavour.items(owner.approvals.list(session_id=session.id,
                                                          status="pending"))
    assert (await done(owner.approvals.get(approval.id))).tool_name == "lookup"
    resolved = await done(owner.approvals.resolve(approval.id, decision="approve",
                                                  reason="fine"))
    assert resolved.type == "approval_resolved"
    [tool_use_id] = await pending_tool_uses(flavour, owner, session.id)
    answered = await done(owner.sessions.tool_results(
        session.id, [{"tool_use_id": tool_use_id, "content": "x is a letter"}]))
    assert [e.type for e in answered.events] == ["tool_result"]
    assert answered.position == answered.events[-1].position
    rest = await flavour.items(stream, until="session_done")
    assert rest[-1].data["status"] == "completed"
    await flavour.close(stream)
    state = await done(owner.sessions.state(session.id, at=first.seq))
    assert (state.at, state.status) == (first.seq, "running")
    log = await flavour.items(owner.sessions.events(session.id, limit=3))
    assert [e.seq for e in log] == list(range(1, len(log) + 1)) and len(log) > 3
    assert await done(owner.sessions.interrupt(session.id)) is None  # nothing runs
    return str(session.id)


async def send_walk(flavour: Flavour, owner: Any) -> None:
    done = flavour.done
    echo = await done(owner.agents.create(name="echo"))  # the scripted model echoes
    session = await done(owner.sessions.create(agent_id=echo.id))
    events = await done(owner.sessions.send(session.id, "hello"))
    assert events[0].type == "user_message" and events[-1].type == "session_done"
    assert events[-1].data["status"] == "completed"
    assert "hello" in "".join(e.data.get("text", "") for e in events if e.type ==
                              "message_delta")
    followed = await flavour.items(await done(owner.sessions.send(session.id, "again",
                                                                  follow=True)))
    assert followed[-1].type == "session_done"
    assert followed[0].seq > events[-1].seq
    assert {e.data.get("turn_id", followed[0].data["turn_id"]) for e in followed} == {
        followed[0].data["turn_id"]}
    assert (await done(owner.sessions.archive(session.id))).status == "archived"
    no_agent = await done(owner.sessions.create())
    with pytest.raises(spool.InvalidRequest):
        await done(owner.sessions.send(no_agent.id, "no turn to wait for"))


async def log_walk(flavour: Flavour, owner: Any, session_id: str) -> None:
    done = flavour.done
    token = await done(owner.stream_tokens.create(session_id=session_id, ttl_seconds=60))
    assert token.session_id == session_id and token.token
    created = await flavour.items(owner.events.list(types=["session_created"],
                                                    stream_type="session", limit=1))
    assert len(created) == 3 and {e.type for e in created} == {"session_created"}
    stream = owner.events.stream(types=["session_created"])
    firehose = await flavour.items(stream, until="session_created")
    assert firehose[0].position == created[0].position
    await flavour.close(stream)
    audit = await flavour.items(owner.audit.list(limit=5))
    assert len(audit) > 5 and all(isinstance(entry, spool.AuditEntry) for entry in audit)


async def tasks_walk(flavour: Flavour, owner: Any) -> None:
    done = flavour.done
    board = await done(owner.boards.create(name="Launch", description="the launch"))
    assert board.id in [b.id for b in await flavour.items(
        owner.boards.list(min_position=board.position))]
    assert (await done(owner.boards.get(board.id))).description == "the launch"
    renamed = await done(owner.boards.update(board.id, name="Launch 2"))
    assert renamed.name == "Launch 2"
    task = await done(owner.tasks.create(board_id=board.id, title="write"))
    after = await done(owner.tasks.create(board_id=board.id, title="ship",
                                          dependencies=[task.id]))
    tasks = await flavour.items(owner.tasks.list(board_id=board.id,
                                                 min_position=after.position))
    assert {t.id for t in tasks} == {task.id, after.id}
    snapshot = await done(owner.boards.snapshot(board.id, min_position=after.position))
    assert [b.task_id for b in snapshot.blocked] == [after.id]
    assert (await done(owner.tasks.get(task.id))).title == "write"
    moved = await done(owner.tasks.update(task.id, status="in_progress"))
    assert moved.status == "in_progress"
    comment = await done(owner.tasks.comments.create(task.id, body="on it"))
    assert [c.id for c in await flavour.items(owner.tasks.comments.list(task.id))] == [
        comment.id]
    assert (await done(owner.tasks.delete(after.id))).deleted is True
    await done(owner.tasks.delete(task.id))
    assert (await done(owner.boards.delete(board.id))).id == board.id


async def budgets_walk(flavour: Flavour, owner: Any) -> None:
    done = flavour.done
    budget = await done(owner.budgets.set("tenant", total={"tokens": 1_000_000}))
    assert isinstance(budget, spool.Budget) and budget.position is not None
    read = await done(owner.budgets.get("tenant", min_position=budget.position))
    assert read.limits["total"].tokens == 1_000_000
    assert [b.scope for b in await flavour.items(owner.budgets.list())] == ["tenant"]
    assert isinstance(await done(owner.budgets.set("tenant")), spool.BudgetDeleted)
    await done(owner.budgets.set("tenant", day={"usd": 5}))
    assert (await done(owner.budgets.delete("tenant"))).deleted is True
    rows = await flavour.items(owner.usage.get(group_by="agent",
                                               min_position=budget.position))
    assert rows and all(row.calls >= 1 for row in rows)


async def test_interrupting_a_running_turn_answers_its_event(flavour: Flavour) -> None:
    admin = flavour.client()
    tenant = await flavour.done(admin.tenants.create(name=f"interrupt-{flavour.name}"))
    owner = flavour.client(tenant=tenant.id)
    script = [{"text": "one two three four five six", "delay": 1}]  # a second a word
    slow = await flavour.done(owner.agents.create(
        name="slow", model={"adapter": "scripted", "script": script}))
    session = await flavour.done(owner.sessions.create(agent_id=slow.id))
    turn = await flavour.done(owner.sessions.send(session.id, "take your time", follow=True))
    started = [await flavour.done(anext(turn) if flavour.name == "async" else next(turn))
               for _ in range(2)]
    assert [e.type for e in started] == ["user_message", "turn_started"]
    interrupted = await flavour.done(owner.sessions.interrupt(session.id))
    assert interrupted.type == "session_interrupted" and interrupted.position is not None
    rest = await flavour.items(turn)
    assert rest[-1].type == "session_done" and rest[-1].data["status"] == "cancelled"
    for client in (admin, owner):
        await flavour.close(client)
