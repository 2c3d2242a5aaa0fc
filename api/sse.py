"""Server-sent events: frames, the response, and the cursor a client resumes from.

Frames are ``id: <seq or position>``, ``event: <type>``, ``data: <envelope JSON>``; ``retry:``
comes first and a ``: keepalive`` comment goes out after 15 s of silence. The envelope bytes
are written as encoded once by the dispatcher (or read from Postgres), never re-encoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from engine.dispatch import CutOff, LiveEvent
from engine.errors import InvalidRequest
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("sse")

RETRY_MS = 2000
# A write that cannot finish in this long means a client that stopped reading but keeps the
# connection open: it is dropped (and resumes by id if it ever reads again).
WRITE_TIMEOUT = 30.0
KEEPALIVE = b": keepalive\n\n"
CUT_OFF = b": cut off: this client fell too far behind; reconnect with Last-Event-ID\n\n"
_MAX_CURSOR = 2**63 - 1


def frame(event_id: int, event: LiveEvent) -> bytes:
    data = event.envelope
    if b"\n" in data or b"\r" in data:  # whitespace in stored JSON: one data line per line
        data = b"\ndata: ".join(data.splitlines())
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.type.encode(), data)


def frames(events: list[LiveEvent], event_id: Callable[[LiveEvent], int]) -> bytes:
    """A batch as one chunk: one socket write for a replayed page or a drained buffer."""
    return b"".join([frame(event_id(event), event) for event in events])


def cursor(request: Request) -> int:
    """Where to resume: the Last-Event-ID header (wins) or ?after=, else 0 (from the start)."""
    header = request.headers.get("last-event-id")
    raw, field = (header, "Last-Event-ID") if header is not None else (
        request.query_params.get("after"), "after")
    if raw is None or raw == "":
        return 0
    # ASCII digits only: str.isdigit() also accepts "²" (int() then fails: a 500) and "١٢".
    if not (raw.isascii() and raw.isdigit()) or int(raw) > _MAX_CURSOR:
        raise InvalidRequest(f"{field} must be a non-negative integer id", field=field)
    return int(raw)


class _EventStreamResponse(StreamingResponse):
    """A streaming response whose every write must finish within WRITE_TIMEOUT."""

    def __init__(self, body: AsyncGenerator[bytes, None], metrics: Metrics) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._body = body
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_in_time(message: Message) -> None:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await send(message)

        try:
            await super().__call__(scope, receive, send_in_time)
        except TimeoutError:
            self._metrics.sse_stalled.inc()
            log.info("sse.client_stalled")
        finally:  # a body stopped at a yield is not closed by the cancellation: close it now
            await self._body.aclose()


def sse_response(
    batches: AsyncIterator[list[LiveEvent]], event_id: Callable[[LiveEvent], int],
    metrics: Metrics,
) -> StreamingResponse:
    return _EventStreamResponse(_body(batches, event_id), metrics)


async def _body(
    batches: AsyncIterator[list[LiveEvent]], event_id: Callable[[LiveEvent], int]
) -> AsyncGenerator[bytes, None]:
    yield b"retry: %d\n\n" % RETRY_MS
    try:
        async for batch in batches:
            yield frames(batch, event_id) if batch else KEEPALIVE
    except CutOff:
        yield CUT_OFF
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()  # unsubscribe now, not when the generator is collected
