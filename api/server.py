"""``server_config(app, settings)``: the uvicorn ``Config`` that ``spool serve`` runs, with the
HTTP limits of ``SPOOL_HTTP_*`` enforced on every connection.

uvicorn (with httptools, the protocol ``uvicorn[standard]`` picks) bounds none of: the size or
the number of a request's headers, how long a request head or body may take to arrive (a
connection that sent half its head was held for ever), or how many connections it serves. Its
``limit_concurrency`` answers a plain-text 503 and refuses at ``limit - 1``, so the connection
cap is ours too. Each limit lives in ``LimitedHttpToolsProtocol``, the protocol class uvicorn
is given (``http=``): an ASGI wrapper never sees a head that is not complete, nor the time
before it is.

A refused request gets the error envelope and ``Connection: close``, then the connection is
closed: ``431`` (head over ``SPOOL_HTTP_MAX_HEADER_BYTES`` or more than ``SPOOL_HTTP_MAX_HEADERS``
headers), ``408`` (head or body not in within its timeout), ``503`` with ``Retry-After`` (over
``SPOOL_HTTP_MAX_CONNECTIONS``). Where no answer can be given (nothing of a request arrived yet,
or a response is already being written) the connection is only closed.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import RequestHeadersTooLarge, RequestTimeout, error_response
from engine.errors import SpoolError, Unavailable
from engine.logging import get_logger
from engine.settings import Settings

log = get_logger("api.server")

# After a refusal the server stops writing but reads (and drops) what the client still sends,
# this long at most: closing a socket with unread input sends a reset, and the client's kernel
# would then drop the answer before the client read it (Apache's and nginx's lingering close).
LINGER_SECONDS = 2.0


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The Config for ``app`` on ``settings.host:port``; logging is ours (structlog), and the
    engine's lifespan is run by the caller."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        lifespan="off", http=limited_protocol(settings),
        # The app serves no WebSocket route: an Upgrade is answered as plain HTTP, and every
        # connection stays under the limits below.
        ws="none",
        timeout_keep_alive=math.ceil(settings.http_keepalive_seconds),  # the protocol's is exact
    )


def limited_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with these settings' limits (uvicorn builds one per connection)."""
    return type("SpoolHttpProtocol", (LimitedHttpToolsProtocol,), {"settings": settings})


class _Refusal(Exception):
    """Raised in a parser callback to stop parsing and answer ``error``."""

    def __init__(self, error: SpoolError) -> None:
        super().__init__(error.message)
        self.error = error


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head, body, keep-alive and connection limits.

    A request head is timed from the connection's start (first request) or from its first byte
    (later requests: until then the keep-alive timeout runs); a body from the end of its head to
    its last byte. Both are total times, so a client sending a byte now and then cannot hold a
    connection."""

    settings: ClassVar[Settings]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.settings.http_keepalive_seconds  # type: ignore[assignment]
        self._in_head = False  # a request head has begun and is not complete
        self._head_size = 0  # its request target and complete headers, in bytes
        self._head_read = 0  # bytes read while it was not complete (what httptools buffers)
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._lingering = False  # answered and half-closed: input is dropped

    # --- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(
            self.settings.http_header_timeout_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus: a refusal raised in a callback is answered (uvicorn would answer
        any callback error 400), and an unfinished head is measured (httptools keeps a header
        to itself until its end, so a 10 MB header is never seen by ``on_header``)."""
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            if self._in_head:
                self._head_read += len(data)
                self._check_head_size(self._head_read)
        except _Refusal as refusal:
            self._refuse(refusal.error)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refusal):
                self._refuse(exc.__context__.error)
            else:
                self._invalid_request()
        except httptools.HttpParserError:
            self._invalid_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()  # pragma: no cover - ws="none"
            else:
                self._unsupported_upgrade_warning()

    def _invalid_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._head_read = self._header_count = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.settings.http_header_timeout_seconds, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        self._check_head_size(self._head_size)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.settings.http_max_headers:
            raise _Refusal(RequestHeadersTooLarge(
                f"more than {self.settings.http_max_headers} request headers",
                details={"field": "headers", "limit": self.settings.http_max_headers}))
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        self._check_head_size(self._head_size)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        # Self included: the cap-th connection is served, one more is refused.
        if len(self.connections) > self.settings.http_max_connections:
            raise _Refusal(Unavailable(
                f"the server is at its limit of {self.settings.http_max_connections} "
                "connections", retry_after=1))
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(
            self.settings.http_body_timeout_seconds, self._body_timed_out)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_body_timer()
        # A body that ends after its response (the app answered without reading it): the
        # keep-alive timer armed by that response was cancelled by the body's bytes, and
        # uvicorn arms it only on a response; arm it again so the idle connection is closed.
        cycle = self.cycle
        if (cycle is not None and cycle.response_complete and not self.pipeline
                and not self.transport.is_closing() and self.timeout_keep_alive_task is None):
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    # --- limits -----------------------------------------------------------------------------

    def _check_head_size(self, size: int) -> None:
        limit = self.settings.http_max_header_bytes
        if size > limit:
            raise _Refusal(RequestHeadersTooLarge(
                f"the request head is over {limit} bytes",
                details={"field": "headers", "limit": limit}))

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head:  # nothing of a request arrived: there is nothing to answer
            self._close("idle")
            return
        seconds = self.settings.http_header_timeout_seconds
        self._refuse(RequestTimeout(f"the request head did not arrive within {seconds} s",
                                    details={"field": "headers", "limit": seconds}))

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle.response_started or self.pipeline:  # an answer now would be out of turn
            self._close("body timeout after a response started")
            return
        # The app waits in receive(): it gets http.disconnect, and what it sends is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        seconds = self.settings.http_body_timeout_seconds
        self._answer(RequestTimeout(f"the request body did not arrive within {seconds} s",
                                    details={"field": "body", "limit": seconds}))

    def _refuse(self, error: SpoolError) -> None:
        """Answer a refused request head, unless a response to an earlier (pipelined) request
        is still being written: an answer now would be taken for that one."""
        if self.cycle is not None and not self.cycle.response_complete:
            self._close(error.message)
        else:
            self._answer(error)

    def _answer(self, error: SpoolError) -> None:
        """Write ``error`` in the envelope, outside the app, and close the connection."""
        self._cancel_timers()
        response = error_response(error)
        log.info("http.refused", status=response.status_code, reason=error.message,
                 client=_client(self.client))
        head = [STATUS_LINE[response.status_code]]
        headers = [*self.server_state.default_headers, *response.raw_headers,
                   (b"connection", b"close")]
        head.extend(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(b"".join([*head, b"\r\n", response.body]))
        self._linger()

    def _linger(self) -> None:
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()  # sent after the answer; the client sees the end
        self.transport.resume_reading()  # uvicorn may have paused it (a body it buffered)
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _close(self, reason: str) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            log.debug("http.closed", reason=reason, client=_client(self.client))
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def _client(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None
