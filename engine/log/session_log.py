"""``SessionLog``: what a session's runner (``engine/runtime/turns.py``) and the session fold
(``catch_up``) need from a log: read a stream, append to it with an expected seq.

``EventStore`` is one; a re-run's scratch log in memory (``engine/debug/rerun.py``) is another,
so the re-run drives the runtime's own runner without pretending to be the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.events import Event, NewEvent


class SessionLog(Protocol):
    async def read_stream(
        self, stream_id: str, *, tenant_id: str, after: int = 0, limit: int = 100
    ) -> list[Event]:
        """Events of one stream with ``seq > after``, in seq order."""
        ...

    async def read_whole_stream(self, stream_id: str, *, tenant_id: str) -> list[Event]:
        """Every event of one stream, in seq order."""
        ...

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, tenant_id: str, stream_type: str,
        expected_seq: int | None = None,
    ) -> list[Event]:
        """``events`` appended atomically, as stored; Conflict if ``expected_seq`` is not the
        stream's last seq."""
        ...
