"""Request context as one pure ASGI middleware: X-Request-Id, bound log context, the access log,
HTTP metrics, and a last-resort 500 in the error envelope (never a stack trace).

A client that goes away while its body is read is no server error: it is logged at info and
recorded with nginx's status 499 (client closed request); nothing is sent.

``JsonBodiesOnly``: a request body that is not JSON is 415 on every route (but NDJSON where
a route reads it: ``NDJSON_BODIES``)."""

from __future__ import annotations

import re
import time

import structlog
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import UnsupportedMediaType, error_response
from api.io import is_json, is_ndjson
from engine.errors import SpoolError
from engine.ids import new_id
from engine.logging import get_logger
from engine.metrics import Metrics

log = get_logger("api")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CLIENT_CLOSED_REQUEST = 499
# The routes whose body is NDJSON (an export to import), not JSON: (method, path).
NDJSON_BODIES = frozenset({("POST", "/v1/sessions/import")})


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or new_id("req")
        scope["query_string"] = _without_empty_values(scope.get("query_string", b""))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                log.info("http.client_disconnected", path=scope["path"])
                status = CLIENT_CLOSED_REQUEST
            except Exception:
                log.exception("http.unhandled_error", path=scope["path"])
                if not response_started:
                    await error_response(SpoolError("internal error"))(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = _route_template(scope)
        self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.http_seconds.labels(route).observe(seconds)
        log.info(
            "http.request", method=scope["method"], path=scope["path"], route=route,
            status=status, duration_ms=round(seconds * 1000, 2),
        )


class JsonBodiesOnly:
    """A request that carries a body (``Content-Length`` above 0, or ``Transfer-Encoding``) not
    declared ``application/json`` is 415 on every route, before the route runs: a route that
    reads no body, or only an optional one, must not act as if none was sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and _has_body(scope)
                and not _declared_right(scope, _header(scope, b"content-type"))):
            error = UnsupportedMediaType("a request body must be JSON (Content-Type: "
                                         "application/json)", field="Content-Type")
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _declared_right(scope: Scope, content_type: str | None) -> bool:
    """JSON, or NDJSON on a route that reads it (where JSON is no import, the route says 415)."""
    if (scope["method"], scope["path"]) in NDJSON_BODIES:
        return is_ndjson(content_type) or is_json(content_type)
    return is_json(content_type)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _has_body(scope: Scope) -> bool:
    if _header(scope, b"transfer-encoding") is not None:
        return True
    length = _header(scope, b"content-length")
    return length is not None and length.strip() not in ("", "0")
def _without_empty_values(query: bytes) -> bytes:
    """The query string without its empty parameters: ``?after=`` (or ``?after``) is as if it
    were not sent, on every route and for every parameter, one rule everywhere (a client that
    fills a template with an empty cursor gets the first page, not a 400 on some routes)."""
    if not query:
        return query
    return b"&".join(part for part in query.split(b"&") if part.partition(b"=")[2])


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_ID.match(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
