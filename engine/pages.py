"""A page of a list: ``{"data": [...], "has_more": bool, "next_cursor": str|null}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from engine.errors import InvalidRequest

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


def page_of(items: Sequence[T], limit: int, cursor: Callable[[T], str]) -> Page[T]:
    """Build a page from ``limit + 1`` fetched items: the extra one only says there is more."""
    has_more = len(items) > limit
    data = list(items[:limit])
    return Page(data=data, has_more=has_more, next_cursor=cursor(data[-1]) if has_more else None)
