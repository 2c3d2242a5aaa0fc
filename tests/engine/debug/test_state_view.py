"""engine/debug/state_view.py on a session log written to the real store by hand: the state at
any seq, and the same state read from the store page by page."""

from __future__ import annotations

import pytest

import engine.debug.state_view as state_view_module
from engine.debug.state_view import state_view
from engine.log.store import EventStore
from tests.engine.debug.recorded import LOG, SID, TENANT, write


async def test_the_state_at_any_seq(own_store: EventStore) -> None:
    await write(own_store, LOG)
    events = await own_store.read_whole_stream(SID, tenant_id=TENANT)
    views = [state_view(events[:at], last_seq=len(events)) for at in range(1, len(events) + 1)]
    assert [view.at for view in views] == list(range(1, len(events) + 1))
    assert all(view.last_seq == len(events) for view in views)

    mid = views[5 - 1]  # after the first delta
    assert mid.current is not None and mid.current.open_message is not None
    assert mid.current.open_message.text == "hel"
    end = views[-1]
    assert end.status == "running" and [t.status for t in end.turns] == ["completed", "running"]
    assert end.current is not None and end.current.number == 2
    assert end.current.open_message is not None and end.current.open_message.text == "cut"
    assert end.cost_nanos == 1500 and end.model_calls == 2
    assert [m.role for m in end.conversation] == ["user", "assistant", "tool", "assistant",
                                                  "user"]
    queued = views[10 - 1]  # turn_b submitted, turn_a still running
    assert [q.turn_id for q in queued.queue] == ["turn_b"]
    assert [t.status for t in queued.turns] == ["running", "queued"]


async def test_the_state_read_page_by_page_is_the_state_of_the_whole(
        own_store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    await write(own_store, LOG)
    events = await own_store.read_whole_stream(SID, tenant_id=TENANT)
    monkeypatch.setattr(state_view_module, "_PAGE", 3)  # the log in pages of 3: pages meet mid-turn
    for at in (1, 3, 4, 7, len(events)):
        assert await state_view_module.state_at(own_store, TENANT, SID, at) == state_view(
            events[:at], last_seq=len(events))
