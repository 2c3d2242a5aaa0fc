"""How a streaming reply is cut into appends: however many deltas are pending when the model
stops, no append holds more than the store takes, nothing is lost or reordered, and the
message_stop and its spend_recorded are in one append together."""

from __future__ import annotations

import asyncio

import pytest

from engine.events import EventData, MessageDelta, MessageStop, SpendRecorded, Usage
from engine.log.store import MAX_EVENTS_PER_APPEND
from engine.runtime.turns import _Pipe


@pytest.mark.parametrize("deltas", [0, 1, 998, 999, 1000, 1001, 1999, 2000, 2001, 6000])
async def test_no_append_is_over_the_limit_and_the_stop_keeps_its_spend(deltas: int) -> None:
    appends: list[list[EventData]] = []

    async def append(*datas: EventData) -> None:
        appends.append(list(datas))
        await asyncio.sleep(0)  # in flight while the next deltas arrive

    pipe = _Pipe(append)
    sent: list[EventData] = [MessageDelta(message_id="msg_1", text=f"w{i} ")
                             for i in range(deltas)]
    for delta in sent:
        await pipe.add(delta)
    stop = MessageStop(message_id="msg_1", stop_reason="end_turn", usage=Usage(output_tokens=1))
    spend = SpendRecorded(turn_id="trn_1", message_id="msg_1", agent_id="agt_1", model="m",
                          usage=Usage(output_tokens=1), tokens=1, cost_nanos=0, priced=False,
                          estimated=False)
    await pipe.flush(stop, spend)
    assert all(0 < len(batch) <= MAX_EVENTS_PER_APPEND for batch in appends)
    assert [data for batch in appends for data in batch] == [*sent, stop, spend]
    assert appends[-1][-2:] == [stop, spend]
