"""Response bodies shared by several routes that are no engine type: what a write appended."""

from __future__ import annotations

import msgspec

from engine.events import Event


class EventAccepted(msgspec.Struct):
    """The event the request appended; what it sets off follows on the session's stream."""

    event: Event


class EventsAccepted(msgspec.Struct):
    """The events the request appended, in log order."""

    events: list[Event]
