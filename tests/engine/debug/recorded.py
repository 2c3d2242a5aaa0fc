"""A session log written to the real store by hand, shared by the timeline, state view and
reader tests: two turns, a model call with a tool call and its spend, a queued turn, and a log
that ends mid-message."""

from __future__ import annotations

import asyncio

from engine.events import (
    ContentBlock,
    EventData,
    MessageDelta,
    MessageStart,
    MessageStop,
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


async def write(store: EventStore, appends: list[list[EventData]], pause: float = 0.0) -> None:
    for datas in appends:
        await store.append(SID, [new_event(data) for data in datas], tenant_id=TENANT,
                           stream_type="session")
        await asyncio.sleep(pause)
