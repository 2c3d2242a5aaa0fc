# Generated from spool/_async/_resources/api_keys.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""API keys of the tenant: create (the plaintext ``key`` is in this answer only), list, revoke."""

from __future__ import annotations

from typing import Literal

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource
from spool._models import ApiKey, ApiKeyPage
from spool._operations import operation


class ApiKeys(Resource):
    @operation("create_api_key")
    def create(self, *, name: str,
               role: Literal["owner", "member", "viewer"] = "member") -> ApiKey:
        return self._sender.model(
            self._sender.call("create_api_key", json={"name": name, "role": role}), ApiKey)

    @operation("list_api_keys")
    def list(self, *, limit: int | None = None) -> Pager[ApiKey]:
        return self._sender.pager(
            self._sender.call("list_api_keys", params={"limit": limit}), ApiKeyPage)

    @operation("revoke_api_key")
    def revoke(self, key_id: str) -> ApiKey:
        """Also closes the streams the key opened."""
        return self._sender.model(self._sender.call("revoke_api_key", key_id), ApiKey)
