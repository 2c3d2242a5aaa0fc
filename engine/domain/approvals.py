"""Approvals: tool calls marked ``requires_approval`` wait for a human. The ``approvals``
projection (engine/projections/approvals.py) lists them (pending, approved, denied, or cancelled
when their turn ended first). A decision is made here, on the session's folded state, and is an
``approval_resolved`` event on the session, appended the way every decision on a session is
(``Sessions.decide``, engine/domain/sessions.py); the worker then runs or refuses the call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

import asyncpg
import msgspec

from engine.domain.session_state import SessionState
from engine.domain.sessions import Sessions
from engine.errors import Conflict, InvalidRequest, NotFound
from engine.events import ApprovalResolved, Event, EventMeta, NewEvent, new_event
from engine.ids import derived_event_id, is_id
from engine.infra.db import connection, fetch_page
from engine.log.store import EventStore
from engine.pages import Page, check_cursor, check_limit
from engine.projections.runner import reached

Decision = Literal["approve", "deny"]
ApprovalStatus = Literal["pending", "approved", "denied", "cancelled"]
STATUSES: tuple[ApprovalStatus, ...] = get_args(ApprovalStatus)
_CATCH_UP_SECONDS = 2.0


class Approval(msgspec.Struct):
    id: str
    session_id: str
    turn_id: str
    tool_use_id: str
    tool_name: str
    input: msgspec.Raw
    status: ApprovalStatus
    reason: str | None
    requested_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class Approvals:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, sessions: Sessions) -> None:
        self._pool = pool
        self._store = store
        self._sessions = sessions

    async def list(
        self, tenant_id: str, *, status: str | None, session_id: str | None, after: str | None,
        limit: int,
    ) -> Page[Approval]:
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        check_cursor(after, "apr")
        await self._caught_up()
        return await fetch_page(
            self._pool, "listing approvals",
            f"SELECT {_COLUMNS} FROM approvals WHERE tenant_id = $1"
            " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR session_id = $3)"
            " AND approval_id > $4 ORDER BY approval_id LIMIT $5",
            tenant_id, status, session_id, after=after, limit=check_limit(limit),
            item=_approval, cursor=lambda a: a.id,
        )

    async def get(self, tenant_id: str, approval_id: str) -> Approval:
        if not is_id(approval_id, "apr"):
            raise NotFound(f"approval {approval_id!r} not found")
        found = await self._find(tenant_id, approval_id)
        if found is None:  # perhaps just requested: let the projection catch up first
            await self._caught_up()
            found = await self._find(tenant_id, approval_id)
        if found is None:
            raise NotFound(f"approval {approval_id!r} not found")
        return found

    async def resolve(
        self, tenant_id: str, approval_id: str, decision: Decision, reason: str | None, *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> Event:
        """Approve or deny a tool call waiting for a human. One already decided, or whose
        turn ended, is a Conflict and nothing is written."""
        approval = await self.get(tenant_id, approval_id)
        event_id = derived_event_id(tenant_id, f"approvals.{approval_id}", idempotency_key)
        if event_id is not None:
            first = await self._store.event_by_id(event_id, tenant_id=tenant_id)
            if first is not None:
                return first

        def decide(state: SessionState) -> list[NewEvent]:
            data = resolution(state, approval_id, decision, reason)
            return [new_event(data, id=event_id, meta=meta)]

        [event] = await self._sessions.decide(tenant_id, approval.session_id, decide)
        return event

    async def _find(self, tenant_id: str, approval_id: str) -> Approval | None:
        async with connection(self._pool, "reading an approval") as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM approvals WHERE approval_id = $1 AND tenant_id = $2",
                approval_id, tenant_id,
            )
        return None if row is None else _approval(row)

    async def _caught_up(self) -> None:
        """Wait (at most 2 s) until the projection has applied the log as it is now, so a
        client that saw approval_requested can act on it at once."""
        await reached(self._pool, "approvals", await self._store.head(), _CATCH_UP_SECONDS)


def resolution(state: SessionState, approval_id: str, decision: Decision,
                reason: str | None) -> ApprovalResolved:
    """The decision on ``approval_id`` if the session's current turn waits for it (Conflict
    otherwise: decided already, interrupted, or not this turn's)."""
    turn = state.current
    for tool_use_id, (pending_id, decided) in (turn.approvals if turn else {}).items():
        if pending_id == approval_id and turn is not None and not turn.interrupted:
            if decided is not None:
                break
            return ApprovalResolved(approval_id=approval_id, turn_id=turn.turn_id,
                                    tool_use_id=tool_use_id, decision=decision, reason=reason)
    raise Conflict(f"approval {approval_id!r} is not waiting for a decision",
                   details={"field": "approval_id"})


_COLUMNS = ("approval_id, session_id, turn_id, tool_use_id, tool_name, input, status, reason,"
            " requested_at, resolved_at, resolved_by")


def _approval(row: Any) -> Approval:
    return Approval(id=row[0], session_id=row[1], turn_id=row[2], tool_use_id=row[3],
                    tool_name=row[4], input=msgspec.Raw(row[5]), status=row[6], reason=row[7],
                    requested_at=row[8], resolved_at=row[9], resolved_by=row[10])
