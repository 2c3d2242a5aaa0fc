"""Server-sent events: the response, and the cursor a client resumes from.

The bytes of a stream (frames, ``retry:``, comments) are built in engine/log/live.py; here they
are written: ``retry:`` first, each batch as one chunk, a ``: keepalive`` comment after 15 s of
silence, and a last comment when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from engine.errors import InvalidRequest
from engine.log.dispatch import CutOff
from engine.log.live import CUT_OFF, ENDED, KEEPALIVE, LiveEvent, closing_comment, frames, retry
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("sse")

RETRY_MS = 2000
# A write that cannot finish in this long means a client that stopped reading but keeps the
# connection open: it is dropped (and resumes by id if it ever reads again).
WRITE_TIMEOUT = 30.0
# Why every stream is closed when the server stops (spool serve, first signal).
SHUTTING_DOWN = "server shutting down, reconnect with Last-Event-ID"
# How long the final comment of a stream closed by the server may take to write.
FINAL_WRITE_TIMEOUT = 2.0
_MAX_CURSOR = 2**63 - 1
_MAX_HEADER_DIGITS = 20


def cursor(request: Request) -> int:
    """Where to resume: the Last-Event-ID header (wins) or ?after=, else 0 (from the start).
    Both are checked: a bad ?after= is a 400 even when the header wins."""
    after = _cursor_value(request.query_params.get("after"), "after")
    header = request.headers.get("last-event-id")
    if not header:  # empty: not sent
        return after
    # A header is a string: any id of up to 20 digits is one, and one past every id waits
    # like any cursor beyond the head (the query integer has its maximum instead).
    if len(header) > _MAX_HEADER_DIGITS or not (header.isascii() and header.isdigit()):
        raise InvalidRequest(f"Last-Event-ID must be an id of at most {_MAX_HEADER_DIGITS} "
                             "digits", field="Last-Event-ID")
    return min(int(header), _MAX_CURSOR)


def _cursor_value(raw: str | None, field: str) -> int:
    if raw is None or raw == "":
        return 0
    # ASCII digits only: str.isdigit() also accepts "²" (int() then fails: a 500) and "١٢".
    if not (raw.isascii() and raw.isdigit()) or int(raw) > _MAX_CURSOR:
        raise InvalidRequest(f"{field} must be a non-negative integer id", field=field)
    return int(raw)


class _StallWatch:
    """Drops clients whose write has not finished within WRITE_TIMEOUT. One sweeper task per
    event loop looks at the writes in progress, instead of a timer per write (a timer per write
    cost a sixth of the server's CPU when fanning out to 100 clients)."""

    def __init__(self) -> None:
        self._writing: dict[object, tuple[float, Callable[[], None]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self, writer: object, on_stall: Callable[[], None]) -> None:
        self._writing[writer] = (time.monotonic(), on_stall)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="spool.sse_stall_watch")

    def end(self, writer: object) -> None:
        self._writing.pop(writer, None)

    async def _sweep(self) -> None:
        try:
            while self._writing:  # ends when no write is in progress; begin() restarts it
                await asyncio.sleep(min(WRITE_TIMEOUT / 4, 1.0))
                started_before = time.monotonic() - WRITE_TIMEOUT
                for writer, (started, on_stall) in list(self._writing.items()):
                    if started < started_before:
                        del self._writing[writer]
                        on_stall()
        finally:
            self._sweeper = None


_stall_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _StallWatch] = (
    weakref.WeakKeyDictionary()
)


def _stall_watch() -> _StallWatch:
    loop = asyncio.get_running_loop()
    watch = _stall_watches.get(loop)
    if watch is None:
        watch = _stall_watches[loop] = _StallWatch()
    return watch


class EventStreamResponse(StreamingResponse):
    """An SSE response. It ends when the body ends, when the client disconnects, when a
    write stalls for WRITE_TIMEOUT, or when the server closes it (``close``: a final comment
    says why); in every case the body is closed at once (which frees its subscription)."""

    def __init__(self, body: AsyncGenerator[bytes, None], metrics: Metrics) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._body = body
        self._metrics = metrics
        # "client" (disconnected), "stall", "server" (close) or "body" (it ended)
        self._ended_by: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._final: bytes | None = None  # the comment ``close`` sends last
        self._on_end: list[Callable[[], None]] = []

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the response is over, however it ended (to unregister)."""
        self._on_end.append(callback)

    def close(self, reason: str) -> None:
        """End this stream now with a final comment giving ``reason`` (the client may
        resume by id, or is refused if its credentials no longer hold). Safe to call at any
        time, more than once, and before the response has started."""
        if self._ended_by is not None or self._final is not None:
            return
        self._final = closing_comment(reason)
        self._end("server")  # nothing yet if it has not started: it sends the comment first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(receive, send)
        finally:
            for callback in self._on_end:
                callback()

    async def _serve(self, receive: Receive, send: Send) -> None:
        self._task = asyncio.current_task()
        watch = _stall_watch()
        listener = asyncio.create_task(self._end_on_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if self._final is None:  # else closed before it started
                async for chunk in self._body:
                    watch.begin(self, self._stalled)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    watch.end(self)
            self._ended_by = self._ended_by or "body"  # from now on close() has nothing to do
            if self._final is not None:
                await self._send_final(send)
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if self._ended_by is None:
                raise  # not ours: the server is shutting down
            assert self._task is not None
            self._task.uncancel()
            if self._ended_by == "server":
                await self._send_final(send)
        except OSError:  # the client went away during a write
            pass
        finally:
            watch.end(self)
            listener.cancel()
            await self._body.aclose()  # unsubscribe now, not when the generator is collected

    async def _end_on_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._end("client")

    def _stalled(self) -> None:
        self._metrics.sse_stalled.inc()
        log.info("sse.client_stalled")
        self._end("stall")

    def _end(self, reason: str) -> None:
        if self._ended_by is None and self._task is not None:
            self._ended_by = reason
            self._task.cancel()

    async def _send_final(self, send: Send) -> None:
        """The closing comment, then the end of the body; given up on a client that does not
        read (it gets no more than FINAL_WRITE_TIMEOUT of the server's time)."""
        assert self._final is not None
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                await send({"type": "http.response.body", "body": self._final,
                            "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse_response(
    batches: AsyncIterator[list[LiveEvent]], event_id: Callable[[LiveEvent], int],
    metrics: Metrics,
) -> EventStreamResponse:
    return EventStreamResponse(_body(batches, event_id), metrics)


async def _body(
    batches: AsyncIterator[list[LiveEvent]], event_id: Callable[[LiveEvent], int]
) -> AsyncGenerator[bytes, None]:
    yield retry(RETRY_MS)
    try:
        async for batch in batches:
            yield frames(batch, event_id) if batch else KEEPALIVE
        yield ENDED  # a tail ends only when nothing can follow (an archived session)
    except CutOff:
        yield CUT_OFF
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()  # unsubscribe now, not when the generator is collected
