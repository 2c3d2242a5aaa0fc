# Generated from spool/_async/_resources/stream_tokens.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Short-lived stream tokens for a browser's EventSource (``?access_token=``)."""

from __future__ import annotations

from spool._sync._resources._base import Resource, fields
from spool._models import StreamToken
from spool._operations import operation


class StreamTokens(Resource):
    @operation("create_stream_token")
    def create(self, *, session_id: str | None = None,
               ttl_seconds: int | None = None) -> StreamToken:
        """A token for one session's stream (or, without ``session_id``, the tenant's)."""
        body = fields({"session_id": session_id, "ttl_seconds": ttl_seconds})
        return self._sender.model(
            self._sender.call("create_stream_token", json=body), StreamToken)
