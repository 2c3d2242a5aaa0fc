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

# The envelope JSON (``Event`` as msgspec encodes it: the same fields in the same order, byte
# for byte) built by Postgres. A replay then decodes one bytea per row instead of a uuid, a
# timestamptz and two json columns, and Postgres does the formatting on its own core.
# to_json escapes text as msgspec does (\" \\ \b \f \n \r \t, other controls as \u00xx);
# msgspec writes the microseconds only when there are some, and UTC as "Z".
_AT = "(created_at AT TIME ZONE 'UTC')"
_ENVELOPE = (
    """'{"id":"' || id::text || '","stream_id":' || to_json(stream_id)::text"""
    """ || ',"stream_type":' || to_json(stream_type)::text || ',"seq":' || seq"""
    """ || ',"position":' || position || ',"type":' || to_json(type)::text"""
    """ || ',"data":' || data::text || ',"meta":' || meta::text"""
    f""" || ',"created_at":"' || to_char({_AT}, 'YYYY-MM-DD"T"HH24:MI:SS')"""
    f""" || CASE to_char({_AT}, 'US') WHEN '000000' THEN '' ELSE to_char({_AT}, '.US') END"""
    """ || 'Z"}'"""
)
# A row as the events a stream writes: see ``live_rows`` (engine/log/live.py).
LIVE_COLUMNS = f"position, stream_id, stream_type, seq, type, convert_to({_ENVELOPE}, 'UTF8')"

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
