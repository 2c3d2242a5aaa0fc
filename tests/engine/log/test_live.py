"""The SSE frame, byte for byte: what a stream writes for an event, a batch and its comments.
(tests/api/test_sse*.py read the same bytes over real sockets, through a parser.)"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import msgspec

from engine.events import Event
from engine.log.live import (
    CUT_OFF,
    ENDED,
    KEEPALIVE,
    LiveEvent,
    closing_comment,
    event_lines,
    frame,
    frames,
    retry,
)


def stored(position: int, seq: int, data: bytes = b'{"n":1}') -> Event:
    return Event(id=uuid.UUID(int=position), stream_id="ses_1", stream_type="session", seq=seq,
                 position=position, type="user_message", data=msgspec.Raw(data),
                 meta=msgspec.Raw(b"{}"), created_at=datetime(2026, 1, 2, tzinfo=UTC))


def test_a_frame_is_its_id_then_event_and_data_lines() -> None:
    event = LiveEvent.from_event("ten_1", stored(position=41, seq=7))
    assert frame(7, event) == b"id: 7\nevent: user_message\ndata: %s\n\n" % event.envelope
    assert json.loads(event.envelope)["data"] == {"n": 1}


def test_stored_json_with_line_breaks_gets_a_data_line_each() -> None:
    assert event_lines("x", b'{\n"a": 1,\r\n"b": 2}') == (
        b'event: x\ndata: {\ndata: "a": 1,\ndata: "b": 2}\n\n'
    )
    live = LiveEvent.from_event("ten_1", stored(position=1, seq=1, data=b'{\n "n": 1\n}'))
    assert b"\n\n" not in live.sse[:-2]  # no blank line inside: one frame, not several
    assert live.sse.endswith(b"\n\n")


def test_a_batch_is_one_chunk_with_each_subscribers_id() -> None:
    events = [LiveEvent.from_event("ten_1", stored(position=p, seq=p - 10)) for p in (11, 12)]
    by_seq = frames(events, lambda event: event.seq)
    by_position = frames(events, lambda event: event.position)
    assert by_seq == frame(1, events[0]) + frame(2, events[1])
    assert by_position == frame(11, events[0]) + frame(12, events[1])
    assert frames([], lambda event: event.seq) == b""


def test_a_fan_out_entry_frames_like_the_stored_event() -> None:
    event = stored(position=5, seq=3)
    direct = LiveEvent.from_event("ten_1", event)
    routed, delay = LiveEvent.from_entry(5, {b"e": direct.envelope, b"t": b"ten_1"})
    assert routed == direct
    assert abs(delay - (time.time() - event.created_at.timestamp())) < 60


def test_the_fields_and_comments_of_a_stream() -> None:
    assert retry(2000) == b"retry: 2000\n\n"
    assert KEEPALIVE == b": keepalive\n\n"
    assert ENDED == b": ended: the session is archived; nothing follows\n\n"
    assert CUT_OFF == (
        b": cut off: this client fell too far behind; reconnect with Last-Event-ID\n\n"
    )
    assert closing_comment("the tenant\nis  suspended") == b": closed: the tenant is suspended\n\n"
