"""The one place engine errors become HTTP responses:
``{"error": {"type": ..., "message": ..., "details"?: ...}}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from engine import errors
from engine.logging import get_logger

log = get_logger("api")


class PayloadTooLarge(errors.InvalidRequest):
    pass


class UnsupportedMediaType(errors.InvalidRequest):
    pass


class UnprocessableEntity(errors.Unprocessable):
    pass


class MethodNotAllowed(errors.InvalidRequest):
    pass


# Answered by the HTTP server itself (api/server.py), before or instead of the app.
class RequestTimeout(errors.InvalidRequest):
    pass


class RequestHeadersTooLarge(errors.InvalidRequest):
    pass


# The status of every error class (a subclass not listed takes its nearest listed base's).
STATUS: dict[type[errors.SpoolError], int] = {
    errors.InvalidRequest: 400,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    errors.Unprocessable: 422,
    RequestHeadersTooLarge: 431,
    errors.Unauthorized: 401,
    errors.BudgetExceeded: 402,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    type: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


def status_of(exc: errors.SpoolError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: errors.SpoolError) -> Response:
    status = status_of(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    headers.update(getattr(exc, "headers", None) or {})
    return _envelope(status, exc.type, exc.message, exc.details, headers)


# Input quoted in a message ('...' or "...", as repr() quotes it) is cut to MAX_QUOTED
# characters, and a whole message to MAX_MESSAGE: a 60 KB id must not come back whole.
MAX_QUOTED = 100
MAX_MESSAGE = 1000
_QUOTED = re.compile(r"""(?<!\w)(['"])((?:\\.|(?!\1)[^\\])*)\1(?!\w)""")


def shortened(message: str) -> str:
    def cut(quoted: re.Match[str]) -> str:
        quote, inner = quoted[1], quoted[2]
        if len(inner) <= MAX_QUOTED:
            return quoted[0]
        return f"{quote}{inner[:MAX_QUOTED]}...{quote}"

    message = _QUOTED.sub(cut, message)
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "..."


def _envelope(status: int, type_: str, message: str, details: Any = None,
              headers: Mapping[str, str] | None = None) -> Response:
    if type_ == errors.SpoolError.type:  # the cause stays in the log
        message = "internal error"
    message = shortened(message)
    body = ErrorEnvelope(ErrorBody(type=type_, message=message, details=details))
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


async def spool_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.SpoolError)
    if status_of(exc) == 500:  # the client sees "internal error"; the log keeps the cause
        log.error("http.internal_error", path=request.url.path, exc_info=exc)
    return error_response(exc)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTPExceptions (404 no route, 405 wrong method, ...) in our envelope."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        return error_response(errors.NotFound(f"no route for {request.url.path!r}"))
    if status == 405:
        response = error_response(MethodNotAllowed(f"method {request.method} not allowed here"))
        response.headers.update(exc.headers or {})
        allowed = allowed_methods(request)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
    if status < 500:
        return _envelope(status, errors.InvalidRequest.type, exc.detail, headers=exc.headers)
    log.error("http.internal_error", path=request.url.path, status=status, detail=exc.detail)
    return _envelope(status, errors.SpoolError.type, exc.detail, headers=exc.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path serves, sorted. A path is served by several Routes (one
    per method: ``GET /v1/agents`` and ``POST /v1/agents``), and Starlette's 405 names only the
    first one whose path matched; so the app's routes are asked again, all of them. Where a
    literal path and a template both match (``/v1/sessions/import``, ``/v1/sessions/{id}``),
    the literal one is the resource: the routes with the fewest path parameters answer."""
    matching: list[tuple[int, set[str]]] = []
    for route in getattr(request.app, "routes", ()):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:  # PARTIAL: the path matched, the method did not
            matching.append((len(getattr(route, "param_convertors", {})),
                             set(getattr(route, "methods", None) or ())))
    fewest = min((params for params, _ in matching), default=0)
    return sorted({m for params, methods in matching if params == fewest for m in methods})


EXCEPTION_HANDLERS = {
    errors.SpoolError: spool_error_handler,
    HTTPException: http_exception_handler,
}
