"""The event envelope and every event type, as msgspec Structs.

A type's schema only grows: new fields are optional, no field changes meaning. Stored JSON is
kept as ``msgspec.Raw`` so it is written to clients without being decoded and encoded again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

STREAM_TYPES = ("session", "agent", "task", "board", "budget", "tenant")


class EventMeta(msgspec.Struct, omit_defaults=True, frozen=True):
    actor: str | None = None
    request_id: str | None = None
    causation_id: str | None = None


class Event(msgspec.Struct, frozen=True):
    """A stored event: the envelope clients receive."""

    id: uuid.UUID
    stream_id: str
    stream_type: str
    seq: int
    position: int
    type: str
    data: msgspec.Raw
    meta: msgspec.Raw
    created_at: datetime


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``data`` and ``meta`` are already-encoded JSON objects.

    Leave ``id`` unset for a new event (the store assigns one); set it to make the append
    idempotent: appending an id that is stored already returns the stored event."""

    type: str
    data: bytes
    id: uuid.UUID | None = None
    meta: bytes = b"{}"


# --- event data types -------------------------------------------------------------------------


class EventData(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Base of every event's ``data``; the tag is the event type."""


class ContentBlock(msgspec.Struct, tag_field="type", tag="text", frozen=True):
    text: str


class SessionCreated(EventData, tag="session_created"):
    tenant_id: str
    agent_id: str | None = None
    title: str | None = None
    metadata: dict[str, str] = {}


class UserMessage(EventData, tag="user_message"):
    turn_id: str
    content: list[ContentBlock]


class SessionArchived(EventData, tag="session_archived"):
    pass


AnyEventData = SessionCreated | UserMessage | SessionArchived

_encoder = msgspec.json.Encoder()
_data_decoder: msgspec.json.Decoder[AnyEventData] = msgspec.json.Decoder(AnyEventData)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def new_event(
    data: EventData,
    *,
    id: uuid.UUID | None = None,
    meta: EventMeta | None = None,
) -> NewEvent:
    tag = type(data).__struct_config__.tag
    assert isinstance(tag, str)
    return NewEvent(
        type=tag,
        data=_encoder.encode(data),
        id=id,
        meta=_encoder.encode(meta) if meta is not None else b"{}",
    )


def decode_data(event: Event) -> AnyEventData:
    """Decode a stored event's data into its typed Struct (for folding, not for the wire)."""
    return _data_decoder.decode(event.data)
