"""The tenant's log: a page of it, its stream by position (resuming by itself), its export."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource
from spool._async._stream import AsyncEventStream
from spool._models import Event, EventPage
from spool._operations import operation
from spool._streaming import Cursor, Reconnect


def _filters(types: Iterable[str] | None, stream_type: str | None) -> dict[str, Any]:
    return {"types": None if types is None else list(types), "stream_type": stream_type}


class AsyncEvents(AsyncResource):
    @operation("events_list_events")
    def list(self, *, after: int | None = None, types: Iterable[str] | None = None,
             stream_type: str | None = None, limit: int | None = None) -> AsyncPager[Event]:
        """The tenant's events after position ``after``, only ``types`` and ``stream_type``
        when given."""
        params = {"after": after, "limit": limit, **_filters(types, stream_type)}
        return self._sender.pager(self._sender.call("events_list_events", params=params),
                                  EventPage)

    @operation("tenant_stream")
    def stream(self, *, after: int | None = None, types: Iterable[str] | None = None,
               stream_type: str | None = None,
               reconnect: Reconnect | None = None) -> AsyncEventStream:
        """The tenant's events by position after ``after`` (None or 0: from the start),
        replayed then live, resuming by itself (the filters are part of the URL, so a
        reconnect keeps them)."""
        call = self._sender.call("tenant_stream", params=_filters(types, stream_type))
        cursor = Cursor("tenant", after or 0, reconnect or Reconnect(), contiguous=False)
        return AsyncEventStream(self._sender, call, cursor)

    @operation("export_tenant")
    def export(self) -> AsyncIterator[dict[str, Any]]:
        """The whole tenant as NDJSON lines, as they stream."""
        return self._sender.lines(self._sender.call("export_tenant"))
