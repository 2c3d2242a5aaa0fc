"""Query parameters that are text, validated at the edge: each is 400 naming it in
``details.field`` when it is too long, carries a control character (NUL among them: Postgres
text cannot hold it), or is not what the route takes (an id of another kind, an unknown event
type), before anything reaches a query. An empty value is an absent one, as for integers
(``api/io.py``'s ``query_int``)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TypeVar, cast

from starlette.requests import Request

from engine.domain.budgets import parse_scope
from engine.errors import InvalidRequest
from engine.events import EVENT_TYPES, STREAM_TYPES
from engine.ids import is_id
from engine.pages import check_cursor

MAX_LENGTH = 200  # names and ids are far shorter (an id is 30 characters)
C = TypeVar("C", bound=str)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The same rules as JSON Schema patterns, for the OpenAPI document (empty: absent).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
ULID = "[0-9A-HJKMNP-TV-Z]{26}"
SCOPE_PATTERN = f"^(tenant|agent:agt_{ULID}|session:ses_{ULID})?$"


def id_pattern(prefix: str) -> str:
    return f"^({prefix}_{ULID})?$"


def query_text(request: Request, name: str, *, max_length: int = MAX_LENGTH) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters", field=name)
    if _CONTROL.search(raw) is not None:
        raise InvalidRequest(f"{name} must not contain control characters", field=name)
    return raw


def query_id(request: Request, name: str, prefix: str) -> str | None:
    """An id filter (``?agent_id=agt_...``): an id of another kind matches nothing, and says so."""
    value = query_text(request, name)
    if value is not None and not is_id(value, prefix):
        article = "an" if prefix[0] in "aeiou" else "a"
        raise InvalidRequest(f"{name} must be {article} {prefix}_ id", field=name)
    return value


def query_cursor(request: Request, prefix: str) -> str | None:
    """``?after=`` of a list paged by id: the ``next_cursor`` of a previous page."""
    after = query_text(request, "after")
    check_cursor(after, prefix)
    return after


def query_scope_cursor(request: Request) -> str | None:
    """``?after=`` of the budget list: a scope (``tenant``, ``agent:<id>``, ``session:<id>``)."""
    after = query_text(request, "after")
    if after is not None:
        try:
            parse_scope(after)
        except InvalidRequest as exc:
            raise InvalidRequest("after must be a scope from a previous page",
                                 field="after") from exc
    return after


def query_choice(request: Request, name: str, choices: Collection[C]) -> C | None:
    value = query_text(request, name)
    if value is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", field=name)
    return cast(C, value)  # one of ``choices``: of their (literal) type


def query_stream_type(request: Request) -> str | None:
    return query_choice(request, "stream_type", STREAM_TYPES)


def query_event_types(request: Request) -> list[str]:
    """``?types=a,b``: event type names, each one the engine appends (a typo would otherwise
    filter out everything, and a stream would stay silent for ever)."""
    raw = query_text(request, "types", max_length=4000)
    if raw is None:
        return []
    types = raw.split(",")
    for name in types:
        if name not in EVENT_TYPES:
            raise InvalidRequest(f"types: {name!r} is not an event type", field="types")
    return types
