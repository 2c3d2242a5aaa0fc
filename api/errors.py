"""The one place engine errors become HTTP responses:
``{"error": {"type": ..., "message": ..., "details"?: ...}}``."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine import errors
from engine.logging import get_logger

log = get_logger("api")

STATUS: dict[type[errors.SpoolError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.BudgetExceeded: 402,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}


class PayloadTooLarge(errors.InvalidRequest):
    status = 413


class UnsupportedMediaType(errors.InvalidRequest):
    status = 415


class UnprocessableEntity(errors.InvalidRequest):
    status = 422


class MethodNotAllowed(errors.InvalidRequest):
    status = 405


class ErrorBody(msgspec.Struct, omit_defaults=True):
    type: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


def status_of(exc: errors.SpoolError) -> int:
    explicit = getattr(exc, "status", None)
    if isinstance(explicit, int):
        return explicit
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
    message = exc.message if status != 500 else "internal error"
    body = ErrorEnvelope(ErrorBody(type=exc.type, message=message, details=exc.details))
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


async def spool_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.SpoolError)
    if status_of(exc) == 500:  # the client sees "internal error"; the log keeps the cause
        log.error("http.internal_error", path=request.url.path, exc_info=exc)
    return error_response(exc)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method) in our envelope."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(errors.NotFound(f"no route for {request.url.path}"))
    response = error_response(MethodNotAllowed(f"method {request.method} not allowed here"))
    response.headers.update(exc.headers or {})
    return response


EXCEPTION_HANDLERS = {
    errors.SpoolError: spool_error_handler,
    HTTPException: http_exception_handler,
}
