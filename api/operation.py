"""``Operation``: what the OpenAPI document says of one route and method that the code cannot
(a summary, the body and response types, the query parameters, who may call it). Each
api/routes module declares its routes with ``route(method, path, handler, Operation(...))``,
so a route and its description sit side by side; api/openapi builds the document from them.
Also the query parameters many operations share (paging, ``min_position``, SSE cursors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.query import MAX_LENGTH, TEXT_PATTERN, ULID, id_pattern
from engine.events import EVENT_TYPES, STREAM_TYPES
from engine.pages import DEFAULT_LIMIT, MAX_LIMIT

JSON = "application/json"
NDJSON = "application/x-ndjson"  # one JSON object per line (exports)
SSE = "text/event-stream"
PROMETHEUS = CONTENT_TYPE_LATEST

Auth = Literal["viewer", "member", "owner", "admin", "runtime"] | None
Shape = Any  # a msgspec-encodable type, or a tuple of them (any one of)
# OpenAPI links: link name -> (the target's operationId, its parameters).
Links = dict[str, tuple[str, dict[str, str]]]


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    where: Literal["query", "header"] = "query"
    required: bool = False
    comma_separated: bool = False  # an array as `a,b` (style form, explode false)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where,
                               "description": self.description, "schema": self.schema}
        if self.required:
            out["required"] = True
        if self.comma_separated:
            out.update(style="form", explode=False)
        return out


@dataclass(frozen=True)
class Operation:
    """One operation. ``auth``: the least role of the API key it needs (the admin token also
    works, naming the tenant in ``Spool-Tenant``), ``admin`` (the admin token only), ``runtime``
    (an agent runtime token) or None (no authentication). ``position``: the write reports the log
    position it reached in ``Spool-Position`` always, or only when it changed something.
    ``errors``: statuses beyond those every such operation has (see api/openapi/paths.py).
    ``also``: other successful answers, ``(status, shape, description)``. ``links``: what a
    client (or a stateful fuzzer) may do next with what the response returned."""

    summary: str
    response: Shape
    status: int = 200
    body: Any = None
    body_optional: bool = False
    auth: Auth = "viewer"
    query: tuple[Param, ...] = ()
    idempotent: bool = False
    position: Literal["always", "if_changed"] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    media: str = JSON
    body_media: str = JSON
    also: tuple[tuple[int, Shape, str], ...] = ()
    rate_limited: bool = False  # X-RateLimit-* headers, and 429
    links: Links | None = None


class OperationRoute(Route):
    """A route serving one method, with the operation that describes it."""

    def __init__(self, method: str, path: str,
                 endpoint: Callable[[Request], Awaitable[Response]],
                 operation: Operation) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.operation = operation


def route(method: str, path: str, endpoint: Callable[[Request], Awaitable[Response]],
          operation: Operation) -> OperationRoute:
    return OperationRoute(method, path, endpoint, operation)


class PageRoute(Route):
    """A GET of a page or file for browsers (``/docs``, ``/static/...``): not an operation of
    the API, so kept out of the OpenAPI document on purpose (docs/DESIGN.md)."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__(path, endpoint, methods=["GET"])


# --- query parameters ---------------------------------------------------------------------------

INT64_MAX = 2**63 - 1  # what a query integer may be (Postgres' bigint); more is a 400


def q(name: str, description: str, type_: str = "string", **schema: Any) -> Param:
    if type_ == "integer":
        schema.setdefault("maximum", INT64_MAX)
        # An empty value (`?limit=`) is as if it were not sent, on every route: the schema says
        # so (a string of length 0; `maxLength` binds only strings, the bounds only numbers).
        return Param(name, description, {"type": ["integer", "string"], "maxLength": 0, **schema})
    return Param(name, description, {"type": type_, **schema})


def text_q(name: str, description: str) -> Param:
    """A text parameter as api/query.py's ``query_text`` takes it."""
    return q(name, description, maxLength=MAX_LENGTH, pattern=TEXT_PATTERN)


def id_q(name: str, prefix: str, description: str) -> Param:
    return q(name, description, pattern=id_pattern(prefix))


LIMIT = q("limit", f"At most this many items (default {DEFAULT_LIMIT}).", "integer",
          minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT)
AFTER = "The cursor: `next_cursor` of the previous page (absent: the first page)."
MIN_POSITION = q(
    "min_position", "Read your writes: wait (bounded) until the view has applied this log "
    "position, the `Spool-Position` of a write (503 if it does not catch up in time; 400 if "
    "it is past the log's head).",
    "integer", minimum=0)


def page(prefix: str) -> tuple[Param, ...]:
    """``limit`` and ``after`` of a list paged by ids of this prefix (``next_cursor`` is the
    last item's id: an ``after`` of another form is a 400)."""
    return LIMIT, q("after", AFTER, pattern=f"^{prefix}_{ULID}$")


def view_page(prefix: str) -> tuple[Param, ...]:
    """The same, for a list read from a view: with ``min_position``."""
    return *page(prefix), MIN_POSITION


def seq_after(description: str) -> Param:
    """``after`` of a list paged by a number (a seq, a version, a position)."""
    return q("after", description, "integer", minimum=0, default=0)


TYPES = Param("types", "Only these event types, comma-separated (e.g. "
              "`task_created,task_updated`); a name that is no event type is 400.",
              {"type": "array", "items": {"type": "string", "enum": sorted(EVENT_TYPES)}},
              comma_separated=True)
STREAM_TYPE = q("stream_type", "Only events of streams of this type.",
                enum=list(STREAM_TYPES))
SSE_AFTER = seq_after("Resume after this id (`Last-Event-ID` wins when both are sent).")
ACCESS_TOKEN = q(
    "access_token", "A stream token (`sst_...`, from `POST /v1/stream_tokens`) for clients that "
    "cannot send headers (a browser's EventSource); it wins over `Authorization`. API keys are "
    "refused here (401): a URL ends up in logs.")

SSE_TEXT = (
    "Server-sent events: `retry: 2000` first, then frames `id: {id}`, `event: {type}`, "
    "`data: {the event as JSON}` (the `Event` schema). First the stored events after the cursor "
    "(`Last-Event-ID` or `?after=`), then live ones, with no gap and no duplicate at the "
    "hand-over. A `: keepalive` comment goes out after 15 s of silence; a client that falls too "
    "far behind gets a `: cut off` comment and the stream closes: reconnect with "
    "`Last-Event-ID`. A stream whose key is revoked or whose tenant is suspended ends with a "
    "`: closed: <why>` comment. Errors before the stream starts are JSON error envelopes."
)

# --- links --------------------------------------------------------------------------------------

CREATED_ID = "$response.body#/id"


def links_to(param: str, **targets: str) -> Links:
    """Links from a create to operations on what it created: ``LinkName="operation_id"``,
    each passing the new id as ``param``."""
    return {name: (op_id, {param: CREATED_ID}) for name, op_id in targets.items()}
