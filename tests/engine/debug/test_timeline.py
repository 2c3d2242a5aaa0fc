"""engine/debug/timeline.py on a session log written to the real store by hand: a model call is
one entry with its deltas joined, its spend and the calls it made after it; turns are numbered by
submission and keep their own counts; times between events; a log that ends mid-message."""

from __future__ import annotations

import itertools

from engine.debug.timeline import MessageEntry, SubmittedEntry, Timeline, TurnDoneEntry, timeline
from engine.log.store import EventStore
from tests.engine.debug.recorded import LOG, SID, TENANT, write


async def test_the_timeline_of_a_log_cut_mid_message(own_store: EventStore) -> None:
    await write(own_store, LOG, pause=0.03)
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


async def test_a_stopped_message_waits_for_its_spend_record(own_store: EventStore) -> None:
    await write(own_store, LOG[:5])
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
