# Generated from spool/_async/_paging.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Lists that page by themselves: iterate the items, or ``pages()`` for the pages as they come
(``{"data", "has_more", "next_cursor"}``; the next page is asked ``after`` the cursor)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Callable, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from spool import _core
from spool._core import Call

if TYPE_CHECKING:
    from spool._sync._sender import Sender

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class PageOf(Protocol[T_co]):
    """A page model of ``spool/_models.py`` (``AgentPage``, ``EventPage``, ...)."""

    @property
    def data(self) -> Sequence[T_co]: ...
    @property
    def has_more(self) -> bool: ...
    @property
    def next_cursor(self) -> str | None: ...


class Pager(Generic[T]):
    """Every item of a list, fetched a page at a time when iterated (each iteration starts
    again from the first page). ``limit`` in the call is the page size."""

    def __init__(self, sender: Sender, call: Call, page: type[PageOf[T]], *,
                 keep: Callable[[T], bool] | None = None) -> None:
        self._sender = sender
        self._call = call
        self._page = page
        self._keep = keep  # a filter the API does not have, applied to each page

    def __iter__(self) -> Iterator[T]:
        return self._items()

    def _items(self) -> Iterator[T]:
        for page in self.pages():
            for item in page.data:
                if self._keep is None or self._keep(item):
                    yield item

    def pages(self) -> Iterator[PageOf[T]]:
        call = self._call
        while True:
            page = _core.answer(self._sender.send(call), self._page)
            yield page
            if not page.has_more or page.next_cursor is None:
                return
            call = dataclasses.replace(call, params={**call.params, "after": page.next_cursor})
