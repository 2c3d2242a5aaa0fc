"""The ``approvals`` projection: every approval a session asked for, pending until decided or
cancelled when its turn ended first (read by engine/domain/approvals.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from engine.events import (
    ApprovalRequested,
    ApprovalResolved,
    Event,
    SessionDone,
    decode_data,
    decode_meta,
)
from engine.log.store import Committed
from engine.logging import get_logger

log = get_logger("approvals")


class ApprovalsProjection:
    name = "approvals"

    def touches(self, event: Event) -> bool:
        return event.stream_type == "session" and event.type in _TYPES

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool:
        wrote = False
        for tenant_id, event in events:
            if event.stream_type != "session" or event.type not in _TYPES:
                continue
            try:
                data = decode_data(event)
            except msgspec.MsgspecError:  # one bad event must not stop the view for ever
                log.warning("approvals.event_skipped", position=event.position)
                continue
            wrote = True
            if isinstance(data, ApprovalRequested):
                await conn.execute(
                    "INSERT INTO approvals (approval_id, tenant_id, session_id, turn_id,"
                    " tool_use_id, tool_name, input, status, requested_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)"
                    " ON CONFLICT (approval_id) DO NOTHING",
                    data.approval_id, tenant_id, event.stream_id, data.turn_id,
                    data.tool_use_id, data.name, msgspec.json.encode(data.input),
                    event.created_at,
                )
            elif isinstance(data, ApprovalResolved):
                await conn.execute(
                    "UPDATE approvals SET status = $2, reason = $3, resolved_at = $4,"
                    " resolved_by = $5 WHERE approval_id = $1",
                    data.approval_id, "approved" if data.decision == "approve" else "denied",
                    data.reason, event.created_at, _actor(event),
                )
            elif isinstance(data, SessionDone):  # a turn that ends leaves nothing to decide
                await conn.execute(
                    "UPDATE approvals SET status = 'cancelled', resolved_at = $2"
                    " WHERE turn_id = $1 AND status = 'pending'",
                    data.turn_id, event.created_at,
                )
        return wrote


_TYPES = frozenset({"approval_requested", "approval_resolved", "session_done"})


def _actor(event: Event) -> str | None:
    return decode_meta(event).actor
