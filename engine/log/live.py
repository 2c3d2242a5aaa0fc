"""A committed event as it lives in one process, and its SSE frame, whole.

A frame is ``id: <seq or position>``, ``event: <type>``, ``data: <envelope JSON>`` and a blank
line. The ``event:`` and ``data:`` lines are built once per process, when the event reaches it
(``LiveEvent.sse``), and shared by every subscriber; each subscriber adds the ``id:`` line it
resumes by (a session stream counts ``seq``, a tenant stream ``position``). The envelope bytes
are written as encoded once (or as read from Postgres), never re-encoded.

A stream also sends a ``retry:`` field first and comments: keepalives, and the last line of a
stream that ends (archived, cut off, closed by the server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from engine.events import Event

_encoder = msgspec.json.Encoder()

KEEPALIVE = b": keepalive\n\n"
ENDED = b": ended: the session is archived; nothing follows\n\n"
CUT_OFF = b": cut off: this client fell too far behind; reconnect with Last-Event-ID\n\n"


class _Route(msgspec.Struct):
    """The envelope fields routing needs; the rest of the JSON is not decoded."""

    stream_id: str
    stream_type: str
    seq: int
    type: str
    created_at: datetime


_route_decoder = msgspec.json.Decoder(_Route)


class LiveEvent(msgspec.Struct, frozen=True):
    position: int
    tenant_id: str
    stream_id: str
    stream_type: str
    seq: int
    type: str
    envelope: bytes  # the event's JSON, encoded once and shared by every subscriber
    # The SSE ``event:`` and ``data:`` lines, built once per process: a subscriber's frame is
    # its ``id:`` line (seq or position, per stream kind) followed by these bytes.
    sse: bytes

    @classmethod
    def create(
        cls, position: int, tenant_id: str, stream_id: str, stream_type: str, seq: int,
        type: str, envelope: bytes,
    ) -> LiveEvent:
        return cls(position, tenant_id, stream_id, stream_type, seq, type, envelope,
                   event_lines(type, envelope))

    @classmethod
    def from_event(cls, tenant_id: str, event: Event) -> LiveEvent:
        return cls.create(event.position, tenant_id, event.stream_id, event.stream_type,
                          event.seq, event.type, _encoder.encode(event))

    @classmethod
    def from_entry(cls, position: int, fields: dict[bytes, bytes]) -> tuple[LiveEvent, float]:
        """The event of a fan-out entry, and how long after its commit it reached this process
        (seconds)."""
        envelope = fields[b"e"]
        route = _route_decoder.decode(envelope)
        event = cls.create(position, fields[b"t"].decode(), route.stream_id, route.stream_type,
                           route.seq, route.type, envelope)
        return event, time.time() - route.created_at.timestamp()


def live_events(tenant_id: str, rows: Sequence[Any]) -> list[LiveEvent]:
    """The events of rows selected as ``EVENT_COLUMNS`` (engine/log/rows.py), one pass per row:
    a replayed page goes to its frames without a stored ``Event`` per row in between (building
    both was half of a replay's Python time)."""
    encode, raw, out = _encoder.encode, msgspec.Raw, []
    for row in rows:
        type = row[5]
        envelope = encode(Event(row[0], row[1], row[2], row[3], row[4], type, raw(row[6]),
                                raw(row[7]), row[8]))
        out.append(LiveEvent(row[4], tenant_id, row[1], row[2], row[3], type, envelope,
                             event_lines(type, envelope)))
    return out


def event_lines(type: str, envelope: bytes) -> bytes:
    """The ``event:`` and ``data:`` lines of a frame, with the blank line that ends it."""
    if b"\n" in envelope or b"\r" in envelope:  # whitespace in stored JSON: a data line each
        envelope = b"\ndata: ".join(envelope.splitlines())
    return b"event: %s\ndata: %s\n\n" % (type.encode(), envelope)


def frame(event_id: int, event: LiveEvent) -> bytes:
    """One event's whole frame, ``id:`` line first."""
    return b"id: %d\n%s" % (event_id, event.sse)


def frames(events: list[LiveEvent], event_id: Callable[[LiveEvent], int]) -> bytes:
    """A batch as one chunk: one socket write for a replayed page or a drained buffer."""
    parts: list[bytes] = []
    for event in events:
        parts += (b"id: %d\n" % event_id(event), event.sse)
    return b"".join(parts)


def retry(milliseconds: int) -> bytes:
    """The ``retry:`` field a stream starts with: how long a client waits to reconnect."""
    return b"retry: %d\n\n" % milliseconds


def closing_comment(reason: str) -> bytes:
    """The last frame of a stream the server ends: an SSE comment saying why (one line)."""
    return b": closed: %s\n\n" % " ".join(reason.split()).encode()
