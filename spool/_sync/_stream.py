# Generated from spool/_async/_stream.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""An event stream that resumes by itself: a session's (ids are its ``seq``s) or the tenant's
(ids are positions). On any disconnect (a network error, the server closing the stream, a
slow-consumer cut-off, a 5xx or 429) it reconnects with ``Last-Event-ID`` set to the last id it
delivered, after the backoff of ``spool/_streaming.py``; what retrying cannot fix (400, 401, 403,
404, 409) raises its ``SpoolError``. Frames are parsed by httpx-sse."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from types import TracebackType
from typing import Self

import httpx
from httpx_sse import EventSource

from spool._sync._io import Wake
from spool._sync._sender import Sender
from spool._core import Call
from spool._exceptions import ProtocolError, SpoolConnectionError, error_from_response
from spool._models import Event
from spool._streaming import RETRYABLE, Cursor


class _Reconnect(Exception):
    """The connection ended in a way worth another one."""

    def __init__(self, failure: BaseException, retry_after: float | None = None) -> None:
        super().__init__(repr(failure))
        self.failure = failure
        self.retry_after = retry_after


class EventStream:
    """An iterator of ``Event`` that reconnects by itself; close it (``with``,
    ``close()``, or closing the client) when done. From another task while one waits for the
    next event, ``close()`` ends that wait (StopIteration) instead of reconnecting."""

    def __init__(self, sender: Sender, call: Call, cursor: Cursor) -> None:
        self._sender = sender
        self._call = call
        self._cursor = cursor
        self._closed = False
        self._busy = False  # a task is inside __next__
        self._wake = Wake()
        self._response: httpx.Response | None = None
        self._events = self._run()
        sender.streams.add(self)

    @property
    def last_event_id(self) -> int:
        """The id of the last event delivered: resume from it later with ``after=``."""
        return self._cursor.last_event_id

    @property
    def reconnects(self) -> int:
        return self._cursor.reconnects

    @property
    def duplicates_dropped(self) -> int:
        return self._cursor.duplicates_dropped

    @property
    def retry(self) -> float:
        """The reconnect base in seconds: the server's latest ``retry:``."""
        return self._cursor.retry

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event:
        if self._closed:
            raise StopIteration
        self._busy = True
        try:
            return next(self._events)
        finally:
            self._busy = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection now."""
        self._closed = True
        self._wake.set()
        self._sender.streams.discard(self)
        if self._busy:
            response = self._response
            if response is not None:
                response.close()  # the reading task gets an error, sees _closed, stops
        else:
            self._events.close()

    def _run(self) -> Generator[Event, None]:
        while not self._closed:
            try:
                for event in self._connection():
                    yield event
            except _Reconnect as reconnect:
                if self._closed:
                    return
                self._wake.wait(self._cursor.failed(reconnect.failure,
                                                    reconnect.retry_after))

    def _connection(self) -> Iterator[Event]:
        """One connection's events; ends with ``_Reconnect`` unless the stream was closed."""
        http = self._sender.http
        request = self._call.request(http)
        request.headers.update(self._cursor.headers())
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as exc:  # includes timeouts and refused connections
            if self._closed:
                return
            raise _Reconnect(exc) from exc
        self._response = response
        try:
            for event in self._events_of(response):
                yield event
        finally:
            self._response = None
            response.close()

    def _events_of(self, response: httpx.Response) -> Iterator[Event]:
        if self._closed:
            return
        self._check(response)
        self._cursor.connected()
        try:
            for message in EventSource(response).iter_sse():
                event = self._cursor.accept(message)
                if event is not None:
                    yield event
        except httpx.TransportError as exc:
            if self._closed:
                return
            raise _Reconnect(exc) from exc
        except httpx.HTTPError as exc:  # not a broken connection: a response we cannot read
            if self._closed:
                return
            raise ProtocolError(f"{self._call.url}: {exc!r}") from exc
        except Exception:
            if self._closed:  # close() from another task closed the response under us
                return
            raise
        if not self._closed:
            raise _Reconnect(SpoolConnectionError("the server closed the stream"))

    def _check(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            response.read()
            error = error_from_response(response)
            if response.status_code not in RETRYABLE:
                raise error
            raise _Reconnect(error, error.retry_after)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise ProtocolError(f"expected text/event-stream, got {content_type or 'nothing'}",
                                status=response.status_code)
