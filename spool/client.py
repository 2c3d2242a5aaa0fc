"""The Python client SDK (httpx only): a session's event stream that resumes by itself.

    async with SpoolClient("http://127.0.0.1:8420", "spk_...") as spool:
        async with spool.stream_session(session_id) as stream:
            async for event in stream:
                print(event.id, event.event, event.data["data"])

``stream_session`` follows ``GET /v1/sessions/{id}/stream``. The SSE frames are parsed as the
WHATWG spec says (``spool/_sse.py``: multi-line ``data`` joined by ``"\\n"``, comments such as
``: keepalive`` ignored, ``retry:`` honoured). On any disconnect (a network error, the server
closing the stream, a slow-consumer cut-off, a 5xx or 429) it reconnects with ``Last-Event-ID`` set
to the last id it delivered, after an exponential backoff with jitter: the base is the server's
``retry:``, it doubles per consecutive failure up to ``max_delay`` and resets after a successful
connect, and a ``Retry-After`` header is a floor. Session event ids are the session's contiguous
``seq`` values, so the iterator checks them: an event already delivered is dropped, and a hole
raises ``StreamGapError`` instead of being hidden. What retrying cannot fix (400, 401, 403, 404,
...) raises the ``SpoolError`` subclass for the server's error envelope (``spool/_exceptions.py``).

This module must not import ``engine`` or ``api``: the SDK ships without the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

# The errors and the parser live in their own modules; spool.client still exports them (it was
# the whole SDK once), the error names from the one list in spool/_exceptions.py.
from spool import _exceptions
from spool._exceptions import *  # noqa: F403
from spool._exceptions import (
    ProtocolError,
    SpoolConnectionError,
    SpoolError,
    StreamGapError,
    error_from_response,
)
from spool._sse import SSEMessage, SSEParser

__all__ = ["SSEMessage", "SSEParser", "SessionStream", "SpoolClient", "StreamEvent"]
__all__ += _exceptions.__all__

log = logging.getLogger("spool.client")

DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=45.0)  # read: three missed 15 s keepalives
DEFAULT_RETRY = 1.0  # the reconnect base (seconds) until the server sends ``retry:``
MIN_RETRY = 0.01
USER_AGENT = "agentspool-python"
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Closing:
    """``async with`` it, and it is closed (``aclose()``) on the way out."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a session stream: ``id`` is the event's ``seq``, ``event`` its type, ``data``
    the whole envelope (``{"id", "stream_id", "seq", "position", "type", "data", "meta", ...}``)."""

    id: int
    event: str
    data: dict[str, Any]


class SpoolClient(_Closing):
    """An agentspool API client. Owns one ``httpx.AsyncClient``; use it as an async context
    manager (or call ``aclose()``), which also closes the streams still open.

    Reconnects: ``max_delay`` caps the backoff (seconds), ``jitter`` adds up to that fraction of
    each delay at random (so many clients do not come back at the same instant), ``max_retries``
    bounds the consecutive failed attempts of one stream (None: retry for ever, as EventSource
    does) and ``initial_retry`` is the base before the server's first ``retry:``."""

    def __init__(
        self, base_url: str, api_key: str, *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_delay: float = 30.0, jitter: float = 0.25, max_retries: int | None = None,
        initial_retry: float = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_delay < 0 or jitter < 0 or initial_retry < 0:
            raise ValueError("max_delay, jitter and initial_retry must not be negative")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be None or >= 0")
        self.base_url = base_url.rstrip("/")
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_retries = max_retries
        self.initial_retry = initial_retry
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
        )
        self._streams: weakref.WeakSet[SessionStream] = weakref.WeakSet()

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        await self._http.aclose()

    def stream_session(self, session_id: str, *, after: int = 0) -> SessionStream:
        """The session's events after ``after`` (0: from the start), replayed then live, for
        ever: iterate it, and close it (``async with`` or ``aclose()``) when done."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError("after must be a non-negative int")
        stream = SessionStream(self, session_id, after)
        self._streams.add(stream)
        return stream

    def backoff(self, attempt: int, base: float, retry_after: float | None = None) -> float:
        """The wait before reconnect number ``attempt`` (0 after a connection that worked):
        ``min(max_delay, base * 2**attempt)``, raised to the server's ``Retry-After`` if that is
        longer, plus up to ``jitter`` of it at random. ``base`` is the server's ``retry:``
        (never below 10 ms, so a ``retry: 0`` cannot spin on a dead server)."""
        delay = min(self.max_delay, max(base, MIN_RETRY) * 2.0 ** min(attempt, 62))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay * (1 + self.jitter * random.random())


class SessionStream(_Closing):
    """An async iterator of ``StreamEvent`` over one session's SSE stream that reconnects by
    itself. ``last_event_id`` is the id of the last event delivered (resume from it later with
    ``stream_session(id, after=...)``); ``reconnects`` counts the reconnect attempts."""

    def __init__(self, client: SpoolClient, session_id: str, after: int) -> None:
        self.session_id = session_id
        self.last_event_id = after
        self.reconnects = 0
        self.duplicates_dropped = 0
        self.retry: float = client.initial_retry  # seconds; the server's ``retry:`` replaces it
        self._client = client
        self._path = f"/v1/sessions/{quote(session_id, safe='')}/stream"
        self._closed = False
        self._busy = False  # a task is inside __anext__
        self._wake = asyncio.Event()
        self._response: httpx.Response | None = None
        self._events = self._run()

    def __aiter__(self) -> SessionStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise StopAsyncIteration
        self._busy = True
        try:
            return await self._events.__anext__()
        finally:
            self._busy = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the connection now. From another task while one waits for the next event, that
        wait ends (StopAsyncIteration) instead of reconnecting."""
        self._closed = True
        self._wake.set()
        self._client._streams.discard(self)
        if self._busy:
            response = self._response
            if response is not None:
                await response.aclose()  # the reading task gets an error, sees _closed, stops
        else:
            await self._events.aclose()

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        client = self._client
        attempt = 0  # consecutive failures since the last connection that worked
        while not self._closed:
            retry_after: float | None = None
            failure: BaseException
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if self.last_event_id:
                headers["Last-Event-ID"] = str(self.last_event_id)
            try:
                async with client._http.stream("GET", self._path, headers=headers) as response:
                    self._response = response
                    if self._closed:
                        return
                    if response.status_code != 200:
                        await response.aread()
                        error = error_from_response(response)
                        if response.status_code not in _RETRYABLE:
                            raise error
                        retry_after, failure = error.retry_after, error
                    else:
                        content_type = response.headers.get("content-type", "")
                        if not content_type.startswith("text/event-stream"):
                            raise ProtocolError(
                                f"expected text/event-stream, got {content_type or 'nothing'}",
                                status=response.status_code)
                        attempt = 0
                        async for event in self._read(response):
                            yield event
                        failure = SpoolConnectionError("the server closed the stream")
                        if self._closed:
                            return
            except httpx.TransportError as exc:  # includes timeouts and broken connections
                if self._closed:
                    return
                failure = exc
            except httpx.HTTPError as exc:  # not a broken connection: a response we cannot read
                if self._closed:
                    return
                raise ProtocolError(f"{self._path}: {exc!r}") from exc
            except Exception:
                if self._closed:  # aclose() from another task closed the response under us
                    return
                raise
            finally:
                self._response = None
            if self._closed:
                return
            if client.max_retries is not None and attempt >= client.max_retries:
                if isinstance(failure, SpoolError):
                    raise failure
                raise SpoolConnectionError(
                    f"{self._path}: gave up after {attempt + 1} failed attempts: {failure!r}"
                ) from failure
            delay = client.backoff(attempt, self.retry, retry_after)
            log.info("spool.stream.reconnect session=%s last_event_id=%d in=%.3fs after=%r",
                     self.session_id, self.last_event_id, delay, failure)
            attempt += 1
            self.reconnects += 1
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _read(self, response: httpx.Response) -> AsyncIterator[StreamEvent]:
        parser = SSEParser()
        async for chunk in response.aiter_bytes():
            messages = parser.feed(chunk)
            if parser.retry is not None:
                self.retry = parser.retry / 1000
            for message in messages:
                event = self._event(message)
                if event is not None:
                    self.last_event_id = event.id
                    yield event
        if parser.last_comment:
            log.info("spool.stream.closed session=%s comment=%r", self.session_id,
                     parser.last_comment)

    def _event(self, message: SSEMessage) -> StreamEvent | None:
        if not (message.id.isascii() and message.id.isdigit()):
            raise ProtocolError(f"session {self.session_id}: event without an integer id "
                                f"({message.id!r})", details={"id": message.id})
        event_id = int(message.id)
        expected = self.last_event_id + 1
        if event_id < expected:
            self.duplicates_dropped += 1
            log.warning("spool.stream.duplicate session=%s id=%d last=%d", self.session_id,
                        event_id, self.last_event_id)
            return None
        if event_id > expected:
            raise StreamGapError(self.session_id, expected, event_id)
        try:
            data = json.loads(message.data)
        except ValueError as exc:
            raise ProtocolError(f"session {self.session_id}: event {event_id} data is not "
                                "JSON", details={"id": event_id}) from exc
        if not isinstance(data, dict):
            raise ProtocolError(f"session {self.session_id}: event {event_id} data is not a "
                                "JSON object", details={"id": event_id})
        return StreamEvent(event_id, message.event, data)
