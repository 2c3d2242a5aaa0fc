"""The SDK's errors: one tree, each carrying the server's error envelope when there is one
(``type``, ``message``, ``details``) and the response's ``status``, ``request_id`` and
``retry_after``.

    SpoolError               the root; also what the client found itself (``status`` None)
    ├── InvalidRequest       400, 405, 413, 415, 422
    ├── Unauthorized         401
    ├── BudgetExceeded       402
    ├── Forbidden            403
    ├── NotFound             404
    ├── Conflict             409
    ├── RateLimited          429
    ├── Unavailable          503
    ├── ServerError          another 5xx
    ├── SpoolConnectionError the server could not be reached (the transport error is the cause)
    ├── ProtocolError        an answer that is not a well-formed session event stream
    └── StreamGapError       the stream skipped ids

The server's ``type`` decides the class; without one, the status does (``error_from_response``).
httpx's errors never reach a caller: they are raised ``from`` as the cause.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

# The public error tree, re-exported by spool (not error_from_response).
__all__ = [
    "BudgetExceeded",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "SpoolConnectionError",
    "SpoolError",
    "StreamGapError",
    "Unauthorized",
    "Unavailable",
]


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
