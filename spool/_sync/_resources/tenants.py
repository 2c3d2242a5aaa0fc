# Generated from spool/_async/_resources/tenants.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Tenants (the admin's): create, list, get, suspend, resume."""

from __future__ import annotations

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource
from spool._models import Tenant, TenantPage
from spool._operations import operation


class Tenants(Resource):
    @operation("create_tenant")
    def create(self, *, name: str) -> Tenant:
        return self._sender.model(
            self._sender.call("create_tenant", json={"name": name}), Tenant)

    @operation("list_tenants")
    def list(self, *, limit: int | None = None) -> Pager[Tenant]:
        return self._sender.pager(
            self._sender.call("list_tenants", params={"limit": limit}), TenantPage)

    @operation("get_tenant")
    def get(self, tenant_id: str) -> Tenant:
        return self._sender.model(self._sender.call("get_tenant", tenant_id), Tenant)

    @operation("suspend_tenant")
    def suspend(self, tenant_id: str) -> Tenant:
        """Ends the tenant's running turns and closes its streams."""
        return self._sender.model(self._sender.call("suspend_tenant", tenant_id), Tenant)

    @operation("resume_tenant")
    def resume(self, tenant_id: str) -> Tenant:
        return self._sender.model(self._sender.call("resume_tenant", tenant_id), Tenant)
