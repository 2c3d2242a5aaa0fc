"""The SSE streams this process has open, with the credentials each was opened with, so that
what ends those credentials (a revoked key, a suspended tenant) ends the streams too.

A stream is anything with ``close(reason)``: the API layer's SSE response. The registry is
per process; ``engine/auth/access.py`` tells every process what to close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec


class Closable(Protocol):
    def close(self, reason: str) -> None: ...


class Opener(msgspec.Struct, frozen=True):
    """Who opened a stream: a tenant's API key (``key_id``), a stream token (``key_id`` is
    the key that asked for it), or the admin (``key_id`` None)."""

    tenant_id: str
    key_id: str | None


class OpenStreams:
    def __init__(self) -> None:
        self._open: dict[Closable, Opener] = {}
        self._final: str | None = None  # set once the process is stopping

    def add(self, stream: Closable, opener: Opener) -> Callable[[], None]:
        """Register ``stream``; returns what unregisters it (call it when the stream ends).
        Once the process is stopping, a stream opened late is closed at once."""
        self._open[stream] = opener
        if self._final is not None:
            self.discard(stream)
            stream.close(self._final)
        return lambda: self.discard(stream)

    def discard(self, stream: Closable) -> None:
        self._open.pop(stream, None)

    def __len__(self) -> int:
        return len(self._open)

    def openers(self) -> set[Opener]:
        return set(self._open.values())

    def close_where(self, matches: Callable[[Opener], bool], reason: str) -> int:
        """Close every stream whose opener ``matches``, with a final comment giving
        ``reason``; returns how many."""
        closing = [stream for stream, opener in self._open.items() if matches(opener)]
        for stream in closing:
            self.discard(stream)
            stream.close(reason)
        return len(closing)

    def close_all(self, reason: str) -> int:
        return self.close_where(lambda _: True, reason)

    def close_for_good(self, reason: str) -> int:
        """Close every stream, and every one opened from now on (the process is stopping)."""
        self._final = reason
        return self.close_all(reason)
