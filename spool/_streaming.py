"""A resuming event stream's bookkeeping, without I/O (the sync and async streams share it):
the cursor it resumes from, the checks on each event's id, and the wait before a reconnect.

Session streams' ids are the session's contiguous ``seq``s: an id already delivered is dropped
and a hole raises ``StreamGapError``. The tenant stream's ids are log positions, filtered by
type, so there only order is checked. The wait before reconnect number ``attempt`` (0 after a
connection that worked) is ``min(max_delay, base * 2**attempt)`` (``base`` is the server's
``retry:``, never below 10 ms, so ``retry: 0`` cannot spin on a dead server), raised to any
``Retry-After``, plus up to ``jitter`` of it at random."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

from httpx_sse import ServerSentEvent

from spool._decode import decode
from spool._exceptions import ProtocolError, SpoolConnectionError, SpoolError, StreamGapError
from spool._models import Event

log = logging.getLogger("spool.stream")

MIN_RETRY = 0.01
# What a reconnect waits for: 5xx and 429 answers are worth another try, not 4xx.
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a stream reconnects: ``max_delay`` caps the backoff (seconds), ``jitter`` adds up
    to that fraction of each delay at random, ``max_retries`` bounds the consecutive failed
    attempts (None: for ever, as EventSource does), ``initial_retry`` is the base until the
    server's ``retry:``."""

    max_delay: float = 30.0
    jitter: float = 0.25
    max_retries: int | None = None
    initial_retry: float = 1.0

    def __post_init__(self) -> None:
        if self.max_delay < 0 or self.jitter < 0 or self.initial_retry < 0:
            raise ValueError("max_delay, jitter and initial_retry must not be negative")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be None or >= 0")

    def backoff(self, attempt: int, base: float, retry_after: float | None = None) -> float:
        delay = min(self.max_delay, max(base, MIN_RETRY) * 2.0 ** min(attempt, 62))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay * (1 + self.jitter * random.random())


class Cursor:
    """Where a stream is: ``last_event_id`` (resume from it later with ``after=``), the
    server's ``retry`` (seconds), and counts of ``reconnects`` and ``duplicates_dropped``."""

    def __init__(self, label: str, after: int, reconnect: Reconnect, *, contiguous: bool):
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError("after must be a non-negative int")
        self.label = label
        self.last_event_id = after
        self.retry = reconnect.initial_retry
        self.reconnect = reconnect
        self.contiguous = contiguous
        self.reconnects = 0
        self.duplicates_dropped = 0
        self.attempt = 0  # consecutive failures since the last connection that worked

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return headers

    def connected(self) -> None:
        self.attempt = 0

    def accept(self, message: ServerSentEvent) -> Event | None:
        """The event a frame carries, or None (a ``retry:`` alone, or a duplicate)."""
        if message.retry is not None and message.retry >= 0:
            self.retry = message.retry / 1000
        if not message.data:
            return None  # the spec dispatches nothing for an empty data buffer
        if not (message.id.isascii() and message.id.isdigit()):
            raise ProtocolError(f"{self.label}: event without an integer id ({message.id!r})",
                                details={"id": message.id})
        event_id = int(message.id)
        if event_id <= self.last_event_id:
            self.duplicates_dropped += 1
            log.warning("spool.stream.duplicate stream=%s id=%d last=%d", self.label,
                        event_id, self.last_event_id)
            return None
        if self.contiguous and event_id > self.last_event_id + 1:
            raise StreamGapError(self.label, self.last_event_id + 1, event_id)
        event = self._decode(event_id, message.data)
        self.last_event_id = event_id
        return event

    def _decode(self, event_id: int, data: str) -> Event:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"{self.label}: event {event_id} data is not JSON",
                                details={"id": event_id}) from exc
        if not isinstance(body, dict):
            raise ProtocolError(f"{self.label}: event {event_id} data is not a JSON object",
                                details={"id": event_id})
        return decode(Event, body)

    def failed(self, failure: BaseException, retry_after: float | None = None) -> float:
        """The wait before the next attempt after ``failure``; raises when the attempts are
        used up (the server's error itself, or ``SpoolConnectionError``)."""
        limit = self.reconnect.max_retries
        if limit is not None and self.attempt >= limit:
            if isinstance(failure, SpoolError):
                raise failure
            raise SpoolConnectionError(
                f"{self.label}: gave up after {self.attempt + 1} failed attempts: {failure!r}"
            ) from failure
        delay = self.reconnect.backoff(self.attempt, self.retry, retry_after)
        log.info("spool.stream.reconnect stream=%s last_event_id=%d in=%.3fs after=%r",
                 self.label, self.last_event_id, delay, failure)
        self.attempt += 1
        self.reconnects += 1
        return delay
