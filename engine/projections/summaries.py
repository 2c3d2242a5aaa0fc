"""Session summaries: ``GET /v1/sessions``, read from the ``agents`` projection's
``session_summaries`` (engine/projections/agents.py) and filtered by agent and status.

A list reads the view as far as it has applied the log; ``min_position`` (a write's
``Spool-Position``) waits until it has applied that much: read-your-writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import asyncpg
import msgspec

from engine.errors import InvalidRequest
from engine.events import SessionStatus
from engine.ids import is_id
from engine.infra.db import fetch_page
from engine.pages import Page, check_cursor, check_limit
from engine.prices import usd
from engine.projections.agents import wait_for_view

STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)


class SessionSummary(msgspec.Struct):
    id: str
    agent_id: str | None
    agent_version: int | None
    title: str | None
    status: SessionStatus
    turns: int
    tokens: int
    usd: float
    cost_nanos: int  # USD x 1e9, exact
    created_at: datetime
    updated_at: datetime  # the session's last event
    last_position: int  # the session's last event


class SessionSummaries:
    def __init__(self, pool: asyncpg.Pool, *, catch_up_seconds: float = 5.0) -> None:
        self._pool = pool
        self.catch_up_seconds = catch_up_seconds

    async def list(
        self, tenant_id: str, *, agent_id: str | None = None, status: str | None = None,
        after: str | None = None, limit: int = 50, min_position: int | None = None,
    ) -> Page[SessionSummary]:
        """Summaries in id order (oldest first), filtered."""
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        if agent_id is not None and not is_id(agent_id, "agt"):
            raise InvalidRequest("agent_id must be an agt_ id", field="agent_id")
        check_cursor(after, "ses")
        check_limit(limit)
        await wait_for_view(self._pool, min_position, self.catch_up_seconds)
        return await fetch_page(
            self._pool, "listing sessions",
            "SELECT session_id, agent_id, agent_version, title, status, turns, tokens,"
            " cost_nanos, created_at, updated_at, last_position FROM session_summaries"
            " WHERE tenant_id = $1 AND ($2::text IS NULL OR agent_id = $2)"
            " AND ($3::text IS NULL OR status = $3) AND session_id > $4"
            " ORDER BY session_id LIMIT $5",
            tenant_id, agent_id, status, after=after, limit=limit, item=_summary,
            cursor=lambda s: s.id,
        )


def _summary(row: Any) -> SessionSummary:
    return SessionSummary(
        id=row[0], agent_id=row[1], agent_version=row[2], title=row[3], status=row[4],
        turns=row[5], tokens=row[6], usd=usd(row[7]), cost_nanos=row[7], created_at=row[8],
        updated_at=row[9], last_position=row[10])
