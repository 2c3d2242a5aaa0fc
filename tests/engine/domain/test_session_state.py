"""engine/domain/session_state.py: the session fold, folded whole or caught up from any point."""

from __future__ import annotations

import pytest

from engine.domain import session_state
from engine.domain.session_state import catch_up, fold
from engine.events import Event
from engine.log.store import EventStore
from tests.engine.debug.recorded import LOG, SID, TENANT, write


async def _recorded(store: EventStore) -> list[Event]:
    await write(store, LOG)
    return await store.read_whole_stream(SID, tenant_id=TENANT)


async def test_catching_up_from_any_seq_ends_where_a_whole_fold_does(
    own_store: EventStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = await _recorded(own_store)
    whole = fold(events)
    monkeypatch.setattr(session_state, "_PAGE", 2)  # catch up over several pages
    for seq in range(1, len(events) + 1):
        state = fold(events[:seq])
        assert state.last_seq == seq
        caught_up = await catch_up(own_store, TENANT, SID, state)
        assert caught_up is state  # brought up in place: a cached state is not copied
        assert caught_up == whole
    assert await catch_up(own_store, TENANT, SID, None) == whole


async def test_the_status_moves_with_the_turns(own_store: EventStore) -> None:
    events = await _recorded(own_store)
    statuses = [fold(events[:seq]).status for seq in range(1, len(events) + 1)]
    assert statuses[0] == "idle"  # created, nothing asked
    assert statuses[1] == "running"  # a message waits for a worker
    assert set(statuses[1:]) == {"running"}  # a server tool: nobody outside is waited on
    end = fold(events)
    assert end.finished == 1
    assert end.current is not None and end.current.turn_id == "turn_b"
    assert end.current.open_message == "msg_3"  # the log ends inside a message
    assert end.queue == []
    assert end.busy


async def test_catching_up_with_nothing_new_changes_nothing(own_store: EventStore) -> None:
    events = await _recorded(own_store)
    state = fold(events)
    again = await catch_up(own_store, TENANT, SID, state)  # nothing new: nothing applied
    assert again == fold(events)
