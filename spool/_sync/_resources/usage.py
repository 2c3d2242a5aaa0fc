# Generated from spool/_async/_resources/usage.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Usage (tokens and USD), grouped by agent, session, model or day."""

from __future__ import annotations

from datetime import date

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource
from spool._models import UsageRow, UsageRowPage
from spool._operations import operation


class Usage(Resource):
    @operation("usage")
    def get(self, *, group_by: str | None = None, from_: date | str | None = None,
            to: date | str | None = None, agent_id: str | None = None,
            session_id: str | None = None, limit: int | None = None,
            min_position: int | None = None) -> Pager[UsageRow]:
        """One row per group; ``from_`` and ``to`` are days (``from`` on the wire)."""
        params = {"group_by": group_by, "from": from_, "to": to, "agent_id": agent_id,
                  "session_id": session_id, "limit": limit, "min_position": min_position}
        return self._sender.pager(self._sender.call("usage", params=params), UsageRowPage)
