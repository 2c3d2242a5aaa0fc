"""The Python client SDK (httpx only): a session's event stream that resumes by itself.

    async with SpoolClient("http://127.0.0.1:8420", "spk_...") as spool:
        async with spool.stream_session(session_id) as stream:
            async for event in stream:
                print(event.id, event.event, event.data["data"])

``stream_session`` follows ``GET /v1/sessions/{id}/stream``. The SSE frames are parsed as the
WHATWG spec says (multi-line ``data`` joined by ``"\\n"``, comments such as ``: keepalive`` ignored,
``retry:`` honoured). On any disconnect (a network error, the server closing the stream, a
slow-consumer cut-off, a 5xx or 429) it reconnects with ``Last-Event-ID`` set to the last id it
delivered, after an exponential backoff with jitter: the base is the server's ``retry:``, it
doubles per consecutive failure up to ``max_delay`` and resets after a successful connect, and a
``Retry-After`` header is a floor. Session event ids are the session's contiguous ``seq`` values,
so the iterator checks them: an event already delivered is dropped, and a hole raises
``StreamGapError`` instead of being hidden. What retrying cannot fix (400, 401, 403, 404, ...)
raises the ``SpoolError`` subclass for the server's error envelope.

This module must not import ``engine`` or ``api``: the SDK ships without the server.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "BudgetExceeded",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "SSEMessage",
    "SSEParser",
    "ServerError",
    "SessionStream",
    "SpoolClient",
    "SpoolConnectionError",
    "SpoolError",
    "StreamEvent",
    "StreamGapError",
    "Unauthorized",
    "Unavailable",
]

log = logging.getLogger("spool.client")

DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=45.0)  # read: three missed 15 s keepalives
DEFAULT_RETRY = 1.0  # the reconnect base (seconds) until the server sends ``retry:``
MIN_RETRY = 0.01
USER_AGENT = "agentspool-python"


# --------------------------------------------------------------------------- errors


class SpoolError(Exception):
    """An error from the server's envelope ``{"error": {"type", "message", "details"}}``, or one
    the client found itself (``status`` is then None)."""

    type: str = "internal_error"

    def __init__(
        self, message: str, *, type: str | None = None, details: Any = None,
        status: int | None = None, request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type  # the server's word wins over the class default
        self.details = details
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.type}: {self.message}"

    @property
    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class InvalidRequest(SpoolError):
    type = "invalid_request"


class Unauthorized(SpoolError):
    type = "unauthorized"


class BudgetExceeded(SpoolError):
    type = "budget_exceeded"


class Forbidden(SpoolError):
    type = "forbidden"


class NotFound(SpoolError):
    type = "not_found"


class Conflict(SpoolError):
    type = "conflict"


class RateLimited(SpoolError):
    type = "rate_limited"


class Unavailable(SpoolError):
    type = "unavailable"


class ServerError(SpoolError):
    type = "internal_error"


class SpoolConnectionError(SpoolError):
    """The server could not be reached (or the connection kept failing) ``max_retries`` times in
    a row; the transport error is the ``__cause__``."""

    type = "connection_error"


class ProtocolError(SpoolError):
    """The server answered with something that is not a well-formed session event stream."""

    type = "protocol_error"


class StreamGapError(SpoolError):
    """The stream skipped ids: an event the client never saw. Never papered over."""

    type = "stream_gap"

    def __init__(self, session_id: str, expected: int, got: int) -> None:
        super().__init__(
            f"session {session_id}: expected event {expected} after {expected - 1}, got {got}",
            details={"session_id": session_id, "expected": expected, "got": got},
        )
        self.expected = expected
        self.got = got


_BY_TYPE: dict[str, type[SpoolError]] = {
    cls.type: cls
    for cls in (InvalidRequest, Unauthorized, BudgetExceeded, Forbidden, NotFound, Conflict,
                RateLimited, Unavailable, ServerError)
}
_BY_STATUS: dict[int, type[SpoolError]] = {
    400: InvalidRequest, 401: Unauthorized, 402: BudgetExceeded, 403: Forbidden, 404: NotFound,
    405: InvalidRequest, 409: Conflict, 413: InvalidRequest, 415: InvalidRequest,
    422: InvalidRequest, 429: RateLimited, 503: Unavailable,
}
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: httpx.Response) -> SpoolError:
    """The ``SpoolError`` for a non-2xx response whose body has been read."""
    status = response.status_code
    kind, message, details = None, f"HTTP {status} {response.reason_phrase}".strip(), None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = str(error.get("message", message))
        details = error.get("details")
    cls = _BY_TYPE.get(kind or "") or _BY_STATUS.get(status) or (
        ServerError if status >= 500 else InvalidRequest)
    return cls(message, type=kind, details=details, status=status,
               request_id=response.headers.get("x-request-id"),
               retry_after=_retry_after(response.headers.get("retry-after")))


# --------------------------------------------------------------------------- SSE parsing


_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched server-sent event, before any JSON decoding."""

    id: str  # the last event ID buffer ("" when the server never set one)
    event: str
    data: str


class SSEParser:
    """An incremental event-stream parser, as the WHATWG HTML spec (9.2.6) says: lines end in
    CRLF, LF or CR (also split across chunks); a leading BOM is dropped; ``:`` lines are comments;
    ``data`` lines are joined by ``"\\n"``; an ``id`` holding NUL is ignored and the id persists
    across events; ``retry`` must be all ASCII digits; a blank line dispatches (nothing when the
    data buffer is empty); an unterminated event at the end of the stream is discarded."""

    def __init__(self) -> None:
        self.retry: int | None = None  # the latest valid ``retry:`` (ms)
        self.last_id = ""
        self.last_comment: str | None = None
        self._tail = b""
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        if not chunk:
            return []
        self._after_cr = chunk[-1:] == b"\r"
        buffer = self._tail + chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._tail = buffer
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        out: list[SSEMessage] = []
        for raw in lines:
            message = self._line(raw.decode("utf-8", "replace"))
            if message is not None:
                out.append(message)
        return out

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            self.last_comment = line[1:].removeprefix(" ")
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():  # "".isdigit() is False
            self.retry = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SSEMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEMessage(self.last_id, event or "message", "\n".join(data))


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a session stream: ``id`` is the event's ``seq``, ``event`` its type, ``data``
    the whole envelope (``{"id", "stream_id", "seq", "position", "type", "data", "meta", ...}``)."""

    id: int
    event: str
    data: dict[str, Any]


class SpoolClient:
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

    async def __aenter__(self) -> SpoolClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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


class SessionStream:
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

    async def __aenter__(self) -> SessionStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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
