# Generated from spool/_async/_resources/approvals.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Approvals of tools marked ``requires_approval``: list, get, resolve (approve or deny)."""

from __future__ import annotations

from typing import Literal

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource, fields
from spool._models import Approval, ApprovalPage, Event, EventAccepted
from spool._operations import operation


class Approvals(Resource):
    @operation("list_approvals")
    def list(self, *, status: str | None = None, session_id: str | None = None,
             limit: int | None = None) -> Pager[Approval]:
        params = {"status": status, "session_id": session_id, "limit": limit}
        return self._sender.pager(self._sender.call("list_approvals", params=params),
                                  ApprovalPage)

    @operation("get_approval")
    def get(self, approval_id: str) -> Approval:
        return self._sender.model(self._sender.call("get_approval", approval_id),
                                  Approval)

    @operation("resolve_approval")
    def resolve(self, approval_id: str, *, decision: Literal["approve", "deny"],
                reason: str | None = None, idempotency_key: str | None = None) -> Event:
        """The ``approval_resolved`` event written."""
        call = self._sender.call("resolve_approval", approval_id,
                                 json=fields({"decision": decision, "reason": reason}),
                                 idempotency_key=idempotency_key)
        return (self._sender.model(call, EventAccepted)).event
