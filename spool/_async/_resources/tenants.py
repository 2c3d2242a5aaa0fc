"""Tenants (the admin's): create, list, get, suspend, resume."""

from __future__ import annotations

from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource
from spool._models import Tenant, TenantPage
from spool._operations import operation


class AsyncTenants(AsyncResource):
    @operation("create_tenant")
    async def create(self, *, name: str) -> Tenant:
        return await self._sender.model(
            self._sender.call("create_tenant", json={"name": name}), Tenant)

    @operation("list_tenants")
    def list(self, *, limit: int | None = None) -> AsyncPager[Tenant]:
        return self._sender.pager(
            self._sender.call("list_tenants", params={"limit": limit}), TenantPage)

    @operation("get_tenant")
    async def get(self, tenant_id: str) -> Tenant:
        return await self._sender.model(self._sender.call("get_tenant", tenant_id), Tenant)

    @operation("suspend_tenant")
    async def suspend(self, tenant_id: str) -> Tenant:
        """Ends the tenant's running turns and closes its streams."""
        return await self._sender.model(self._sender.call("suspend_tenant", tenant_id), Tenant)

    @operation("resume_tenant")
    async def resume(self, tenant_id: str) -> Tenant:
        return await self._sender.model(self._sender.call("resume_tenant", tenant_id), Tenant)
