"""engine/debug/replay.py on a session log written to the real store by hand: a model call is one
entry with its deltas joined, its spend and the calls it made after it; turns are numbered by
submission and keep their own counts; times between events; a log that ends mid-message; the
state at any seq; the operator's reader (found without a tenant, follow)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from engine.debug import replay
from engine.debug.replay import (
    MessageEntry,
    SessionReader,
    SubmittedEntry,
    Timeline,
    TurnDoneEntry,
    state_view,
    timeline,
)
from engine.errors import NotFound
from engine.events import (
    ContentBlock,
    EventData,
    MessageDelta,
    MessageStart,
    MessageStop,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SpendRecorded,
    ToolResult,
    ToolUse,
    TurnStarted,
    Usage,
    UserMessage,
    new_event,
)
from engine.log.store import EventStore

TENANT = "ten_replay"
SID = "ses_01JREPLAYREPLAYREPLAYREPLA"


def _user(turn_id: str, text: str) -> UserMessage:
    return UserMessage(turn_id=turn_id, content=[ContentBlock(text=text)])


def _spend(turn_id: str, message_id: str, cost: int) -> SpendRecorded:
    usage = Usage(input_tokens=5, output_tokens=2)
    return SpendRecorded(turn_id=turn_id, message_id=message_id, agent_id="agt_x", model="m",
                         usage=usage, tokens=7, cost_nanos=cost)


# Each inner list is one append (one commit, one created_at).
LOG: list[list[EventData]] = [
    [SessionCreated(tenant_id=TENANT, agent_id="agt_x", agent_version=2, title="t")],
    [_user("turn_a", "look it up")],
    [TurnStarted(turn_id="turn_a", worker="wrk_1"),
     MessageStart(turn_id="turn_a", message_id="msg_1", model="m")],
    [MessageDelta(message_id="msg_1", text="hel"), MessageDelta(message_id="msg_1", text="lo")],
    [ToolUse(turn_id="turn_a", message_id="msg_1", tool_use_id="tu_1", name="lookup",
             input={"word": "w"}, executor="server"),
     MessageStop(message_id="msg_1", stop_reason="tool_use",
                 usage=Usage(input_tokens=5, output_tokens=2)),
     _spend("turn_a", "msg_1", 1500)],
    [_user("turn_b", "next")],  # queued while turn_a runs
    [ToolResult(turn_id="turn_a", tool_use_id="tu_1", content=[ContentBlock(text="found")])],
    [MessageStart(turn_id="turn_a", message_id="msg_2", model="m"),
     MessageDelta(message_id="msg_2", text="done"),
     MessageStop(message_id="msg_2", stop_reason="end_turn",
                 usage=Usage(input_tokens=9, output_tokens=1)),
     SessionDone(turn_id="turn_a", status="completed")],
    [TurnStarted(turn_id="turn_b", worker="wrk_2"),
     MessageStart(turn_id="turn_b", message_id="msg_3", model="m"),
     MessageDelta(message_id="msg_3", text="cu"), MessageDelta(message_id="msg_3", text="t")],
]


async def _write(store: EventStore, appends: list[list[EventData]], pause: float = 0.0) -> None:
    for datas in appends:
        await store.append(SID, [new_event(data) for data in datas], tenant_id=TENANT,
                           stream_type="session")
        await asyncio.sleep(pause)


async def test_the_timeline_of_a_log_cut_mid_message(own_store: EventStore) -> None:
    await _write(own_store, LOG, pause=0.03)
    events = await own_store.read_whole_stream(SID, tenant_id=TENANT)
    entries = timeline(events)
    assert [entry.__struct_config__.tag for entry in entries] == [
        "session_created", "user_message", "turn_started", "message", "tool_use",
        "user_message", "tool_result", "message", "turn_done", "turn_started", "message"]

    first, second, cut = (e for e in entries if isinstance(e, MessageEntry))
    assert (first.text, first.stop_reason, first.tool_use_ids) == ("hello", "tool_use", ["tu_1"])
    assert (first.seq, first.last_seq) == (4, 9)  # message_start .. its spend_recorded
    assert (first.cost_nanos, first.spend_tokens) == (1500, 7)
    assert first.duration is not None and first.duration >= 0.05  # two appends, 30 ms apart
    assert (second.text, second.stop_reason, second.cost_nanos) == ("done", "end_turn", None)
    assert (cut.text, cut.stop_reason, cut.usage, cut.turn) == ("cut", None, None, 2)

    submitted = [e for e in entries if isinstance(e, SubmittedEntry)]
    assert [(e.turn, e.turn_id, e.text) for e in submitted] == [
        (1, "turn_a", "look it up"), (2, "turn_b", "next")]
    [done] = [e for e in entries if isinstance(e, TurnDoneEntry)]
    assert (done.turn, done.status, done.model_calls, done.tokens, done.cost_nanos) == (
        1, "completed", 2, 17, 1500)
    assert done.duration >= 0.15  # from turn_started, five appends later

    assert entries[0].since_previous == 0
    # An entry that opens an append came 30 ms after the previous one; within one, 0.
    by_seq = {entry.seq: entry for entry in entries}
    assert all(by_seq[seq].since_previous >= 0.025 for seq in (2, 3, 10, 11, 12, 16))
    assert by_seq[7].since_previous >= 0.025 and by_seq[4].since_previous == 0
    assert all(later.seq > earlier.seq for earlier, later in itertools.pairwise(entries)
               if not isinstance(earlier, MessageEntry))


async def test_the_state_at_any_seq(own_store: EventStore) -> None:
    await _write(own_store, LOG)
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
    await _write(own_store, LOG)
    events = await own_store.read_whole_stream(SID, tenant_id=TENANT)
    monkeypatch.setattr(replay, "_PAGE", 3)  # the log in pages of 3: pages meet mid-turn
    for at in (1, 3, 4, 7, len(events)):
        assert await replay.state_at(own_store, TENANT, SID, at) == state_view(
            events[:at], last_seq=len(events))


async def test_a_stopped_message_waits_for_its_spend_record(own_store: EventStore) -> None:
    await _write(own_store, LOG[:5])
    events = await own_store.read_whole_stream(SID, tenant_id=TENANT)
    line = Timeline()
    stop = next(i for i, e in enumerate(events) if e.type == "message_stop")
    fed = [entry for event in events[:stop + 1] for entry in line.feed(event)]
    assert not any(isinstance(e, MessageEntry) for e in fed)  # held for its spend record
    [message, tool] = line.feed(events[stop + 1])  # the spend: out with the message
    assert isinstance(message, MessageEntry) and message.cost_nanos == 1500
    assert tool.__struct_config__.tag == "tool_use"
    # Without a spend record (a call that reported no usage), settle lets it out.
    line = Timeline()
    for event in events[:stop + 1]:
        line.feed(event)
    [message, _] = line.settle()
    assert isinstance(message, MessageEntry) and message.cost_nanos is None


async def test_the_reader_finds_a_session_by_id_alone_and_follows_it(
    own_store: EventStore, database_url: str,
) -> None:
    from engine.infra.db import create_pool

    await _write(own_store, LOG[:2])
    pool = await create_pool(database_url, size=2)
    try:
        reader = await SessionReader.open(pool, SID)
        assert reader.tenant_id == TENANT
        assert [e.seq for e in await reader.events(after=1, until=2)] == [2]
        with pytest.raises(NotFound):
            await SessionReader.open(pool, "ses_nothing")
        await own_store.append("agt_x", [new_event(SessionArchived())], tenant_id=TENANT,
                               stream_type="agent")
        with pytest.raises(NotFound):  # a stream that is not a session
            await SessionReader.open(pool, "agt_x")

        stop = asyncio.Event()
        seen: list[str] = []

        async def follow() -> None:
            async for batch in reader.follow(after=2, stop=stop, interval=0.05):
                seen.extend(event.type for event in batch)

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        assert seen == [] and not following.done()
        await _write(own_store, [LOG[2], [SessionArchived()]])
        async with asyncio.timeout(30):
            await following  # ends by itself after session_archived
        assert seen == ["turn_started", "message_start", "session_archived"]

        stop.set()  # a set stop ends a follow at once
        assert [b async for b in reader.follow(after=0, stop=stop)] == []
    finally:
        await pool.close()
