"""Reading requests and writing responses: JSON bodies with size and type checks, query
parameters, and msgspec-encoded JSON responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, TypeVar, overload

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api import json_limits
from api.errors import PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType
from api.state import settings_of
from engine.errors import InvalidRequest
from engine.events import NUL_FREE as NUL_FREE  # re-exported: request bodies use it
from engine.events import Event
from engine.pages import DEFAULT_LIMIT

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `(?:key` in `)?\$(.*)`$")  # a dict key's error names the dict
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")

_INT64_MAX = 2**63 - 1  # the largest bigint


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


# The answer of a response that hands out a secret (a key, a token): shown once, never cached.
NO_STORE = {"Cache-Control": "no-store"}


@overload
def position_header(event: Event | int) -> dict[str, str]: ...
@overload
def position_header(event: Event | int | None) -> dict[str, str] | None: ...


def position_header(event: Event | int | None) -> dict[str, str] | None:
    """``Spool-Position``: the log position a write reached (its last event, or the position
    itself), for read-your-writes; None when the write appended nothing (it changed
    nothing)."""
    if event is None:
        return None
    return {"Spool-Position": str(event if isinstance(event, int) else event.position)}


async def read_json(request: Request, body_type: type[T]) -> T:
    """The request body decoded into ``body_type``: 415 if not JSON, 413 if over the limit,
    400 if malformed (or not UTF-8), 422 naming the field if it does not fit the type."""
    _require_json(request)
    raw = await _read_limited(request, settings_of(request).max_body_bytes)
    return _decode(request, raw, body_type)


async def read_optional_json(request: Request, body_type: type[T]) -> T:
    """The JSON body, or the type's defaults when the request has none (an empty body). A body
    is never ignored: one that is not declared ``application/json`` is 415, as on every route."""
    raw = await _read_limited(request, settings_of(request).max_body_bytes)
    if not raw:
        return body_type()
    _require_json(request)
    return _decode(request, raw, body_type)


NDJSON = "application/x-ndjson"


async def read_ndjson(request: Request, limit: int) -> bytes:
    """The request body, declared ``application/x-ndjson`` (else 415), of at most ``limit``
    bytes (else 413); its lines are the caller's to judge."""
    if not is_ndjson(request.headers.get("content-type")):
        raise UnsupportedMediaType(f"the body must be NDJSON (Content-Type: {NDJSON})",
                                   field="Content-Type")
    return await _read_limited(request, limit)


def is_ndjson(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == NDJSON


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type header says ``application/json`` (parameters aside)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def _require_json(request: Request) -> None:
    if not is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)",
                                   field="Content-Type")


def _decode(request: Request, raw: bytes, body_type: type[T]) -> T:
    settings = settings_of(request)
    try:
        json_limits.check(raw, body_type, depth=settings.max_json_depth,
                          field_bytes=settings.max_json_field_bytes)  # before msgspec recurses
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        fitting = _with_integral_numbers(raw, body_type)
        if fitting is not None:
            return fitting
        message, field = _split_path(str(exc))
        raise UnprocessableEntity(message, field=field) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}", field="body") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the body is not valid UTF-8", field="body") from exc


def _with_integral_numbers(raw: bytes, body_type: type[T]) -> T | None:
    """The body decoded with every integral number (``2.0``, ``1e3``) read as an integer, or
    None if it still does not fit. JSON has one number type, and JSON Schema (what the OpenAPI
    document promises) counts 2.0 as an integer; msgspec does not, so this is tried only when
    the strict decoding failed (the common case pays nothing)."""
    try:
        return msgspec.convert(_integral_as_int(msgspec.json.decode(raw)), body_type)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


def _integral_as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_as_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_as_int(item) for item in value]
    return value


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def _split_path(message: str) -> tuple[str, str]:
    """msgspec says 'Expected `str`, got `int` - at `$.name`': return (message, 'name').
    For a missing or unknown field the field itself is named in the message."""
    match = _PATH.search(message)
    path = match[1].lstrip(".") if match else ""
    text = message[: match.start()] if match else message
    named = _NAMED_FIELD.search(text)
    if named is not None:
        path = f"{path}.{named[1]}" if path else named[1]
    return text, path or "body"


_INTEGER = re.compile(r"^-?[0-9]{1,20}$")  # longer is out of range anyway (int() of a
# few thousand digits raises)


@overload
def query_int(request: Request, name: str, default: int, *, minimum: int = 0) -> int: ...
@overload
def query_int(request: Request, name: str, default: None, *, minimum: int = 0) -> int | None: ...


def query_int(
    request: Request, name: str, default: int | None, *, minimum: int = 0
) -> int | None:
    """An integer query parameter between ``minimum`` and 2**63-1 (what Postgres' bigint holds),
    else 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if _INTEGER.match(raw) is None:  # int() would also take " 1", "1_0" and non-ASCII digits
        raise InvalidRequest(f"{name} must be an integer", field=name)
    value = int(raw)
    if not minimum <= value <= _INT64_MAX:
        raise InvalidRequest(f"{name} must be between {minimum} and {_INT64_MAX}", field=name)
    return value


_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def query_date(request: Request, name: str) -> date | None:
    """A ``YYYY-MM-DD`` query parameter, else 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if _DATE.match(raw) is None:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be a date, YYYY-MM-DD", field=name) from exc


def query_limit(request: Request) -> int:
    return query_int(request, "limit", DEFAULT_LIMIT, minimum=1)


def query_min_position(request: Request) -> int | None:
    """``?min_position=``: read a view once it has applied this log position (a write's
    ``Spool-Position``)."""
    return query_int(request, "min_position", None)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters",
                             field="Idempotency-Key")
    return key
