# Generated from spool/_async/_resources/audit.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Who did what, from the log."""

from __future__ import annotations

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource
from spool._models import AuditEntry, AuditEntryPage
from spool._operations import operation


class Audit(Resource):
    @operation("audit")
    def list(self, *, actor: str | None = None,
             limit: int | None = None) -> Pager[AuditEntry]:
        return self._sender.pager(
            self._sender.call("audit", params={"actor": actor, "limit": limit}),
            AuditEntryPage)
