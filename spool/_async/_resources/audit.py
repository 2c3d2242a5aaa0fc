"""Who did what, from the log."""

from __future__ import annotations

from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource
from spool._models import AuditEntry, AuditEntryPage
from spool._operations import operation


class AsyncAudit(AsyncResource):
    @operation("audit")
    def list(self, *, actor: str | None = None,
             limit: int | None = None) -> AsyncPager[AuditEntry]:
        return self._sender.pager(
            self._sender.call("audit", params={"actor": actor, "limit": limit}),
            AuditEntryPage)
