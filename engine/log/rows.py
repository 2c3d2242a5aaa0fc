"""Events as rows of ``events``: the columns both the store's reads and the appender select,
and what a row becomes."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from engine.events import Event

EVENT_COLUMNS = "id, stream_id, stream_type, seq, position, type, data, meta, created_at"
# An event without its stored JSON (a header: what it is, where and when).
HEADER_COLUMNS = EVENT_COLUMNS.replace("data, meta", "'{}'::json, '{}'::json")
E_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS.split(", "))

# A stream's version: its last seq, one backward step of the (stream_id, seq) index.
LAST_SEQ = (
    "coalesce((SELECT e.seq FROM events e WHERE e.stream_id = s.stream_id"
    " ORDER BY e.seq DESC LIMIT 1), 0)"
)


class Committed(NamedTuple):
    """A committed event with its tenant: what the engine's own consumers (fan-out, dispatch,
    projections) read from the whole log. Unpacks as ``tenant_id, event``."""

    tenant_id: str
    event: Event


def event_of(row: Any) -> Event:
    """The event of a row selected as ``EVENT_COLUMNS``."""
    return Event(
        id=row[0],
        stream_id=row[1],
        stream_type=row[2],
        seq=row[3],
        position=row[4],
        type=row[5],
        data=msgspec.Raw(row[6]),
        meta=msgspec.Raw(row[7]),
        created_at=row[8],
    )
