"""A page of a list: ``{"data": [...], "has_more": bool, "next_cursor": str|null}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from engine.errors import InvalidRequest
from engine.ids import is_id

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def check_cursor(after: str | None, prefix: str) -> None:
    """A list paged by id takes as ``after`` only an id of its items' kind (None: from the
    start): anything else is InvalidRequest naming ``after`` (and never reaches a query)."""
    if after is not None and not is_id(after, prefix):
        article = "an" if prefix[0] in "aeiou" else "a"
        raise InvalidRequest(f"after must be {article} {prefix}_ id from a previous page",
                             field="after")


def page_of(items: Sequence[T], limit: int, cursor: Callable[[T], str]) -> Page[T]:
    """Build a page from ``limit + 1`` fetched items: the extra one only says there is more."""
    has_more = len(items) > limit
    data = list(items[:limit])
    return Page(data=data, has_more=has_more, next_cursor=cursor(data[-1]) if has_more else None)
