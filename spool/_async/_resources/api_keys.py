"""API keys of the tenant: create (the plaintext ``key`` is in this answer only), list, revoke."""

from __future__ import annotations

from typing import Literal

from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource
from spool._models import ApiKey, ApiKeyPage
from spool._operations import operation


class AsyncApiKeys(AsyncResource):
    @operation("create_api_key")
    async def create(self, *, name: str,
                     role: Literal["owner", "member", "viewer"] = "member") -> ApiKey:
        return await self._sender.model(
            self._sender.call("create_api_key", json={"name": name, "role": role}), ApiKey)

    @operation("list_api_keys")
    def list(self, *, limit: int | None = None) -> AsyncPager[ApiKey]:
        return self._sender.pager(
            self._sender.call("list_api_keys", params={"limit": limit}), ApiKeyPage)

    @operation("revoke_api_key")
    async def revoke(self, key_id: str) -> ApiKey:
        """Also closes the streams the key opened."""
        return await self._sender.model(self._sender.call("revoke_api_key", key_id), ApiKey)
