"""Stream tokens: short-lived credentials for a browser's ``EventSource``, which cannot send an
``Authorization`` header. A caller with an API key (or the admin token) asks for one
(``POST /v1/stream_tokens``) and opens the SSE stream with ``?access_token=sst_...``.

A token reads the streams of one tenant (or of one session) and nothing else. It opens streams
until it expires (5 minutes by default, 1 hour at most), and resumes them (a reconnect with a
``Last-Event-ID``, as ``EventSource`` sends after a network blip or a server restart) for
``SPOOL_STREAM_TOKEN_RESUME_SECONDS`` more (a day by default): ``EventSource`` keeps its URL, and
takes a 401 as final. It is kept like an API key (a sha256 of the secret, found by id, compared
in constant time) and dies with the key that asked for it: revoking the key, or suspending the
tenant, closes the streams its tokens opened (engine/auth/access.py) and refuses the next
connection, resume or not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec

from engine.auth.credentials import STREAM_TOKEN, matches
from engine.errors import Forbidden, NotFound, Unauthorized
from engine.ids import is_id
from engine.infra.db import connection
from engine.log.store import EventStore


class StreamTokenIn(msgspec.Struct, forbid_unknown_fields=True):
    session_id: str | None = None  # only this session's stream (None: any of the tenant's)
    ttl_seconds: Annotated[int, msgspec.Meta(ge=10, le=3600)] = 300


class StreamToken(msgspec.Struct):
    token: str
    expires_at: datetime
    session_id: str | None


class StreamGrant(msgspec.Struct, frozen=True):
    """What a valid token lets its bearer read."""

    tenant_id: str
    session_id: str | None
    key_id: str | None = None  # the API key behind it (None: the admin's)


def is_stream_token(token: str) -> bool:
    return STREAM_TOKEN.marks(token)


class StreamTokens:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, *,
                 resume_seconds: float = 0.0) -> None:
        self._pool = pool
        self._store = store
        self.resume_seconds = resume_seconds

    async def create(self, tenant_id: str, key_id: str | None,
                     body: StreamTokenIn) -> StreamToken:
        """A token for ``tenant_id``'s streams, asked for by API key ``key_id`` (None: the
        admin token). An unknown or another tenant's session is NotFound naming ``session_id``."""
        if body.session_id is not None:
            await self._check_session(tenant_id, body.session_id)
        minted = STREAM_TOKEN.mint()
        async with connection(self._pool, "creating a stream token") as conn:
            # Tokens past their resume window are of no use: whoever makes a new one clears
            # those a day past it (until then a late reconnect is told why it is refused).
            await conn.execute(
                "DELETE FROM stream_tokens WHERE expires_at"
                " < now() - make_interval(secs => $1) - interval '1 day'", self.resume_seconds)
            expires_at = await conn.fetchval(
                "INSERT INTO stream_tokens (id, tenant_id, key_id, session_id, secret_hash,"
                " expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))"
                " RETURNING expires_at",
                minted.id, tenant_id, key_id, body.session_id, minted.hash, body.ttl_seconds)
        return StreamToken(minted.token, expires_at, body.session_id)

    async def authenticate(self, token: str, *, resuming: bool = False) -> StreamGrant:
        """What ``token`` reads. ``resuming``: the connection resumes a stream by id (it
        sent Last-Event-ID), which an expired token may still do within the resume window."""
        parsed = STREAM_TOKEN.parse(token)
        if parsed is None:
            raise _invalid("invalid stream token")
        token_id, presented = parsed
        async with connection(self._pool, "authenticating a stream token") as conn:
            row = await conn.fetchrow(
                "SELECT s.tenant_id, s.session_id, s.key_id, s.secret_hash,"
                " s.expires_at <= now() AS expired,"
                " s.expires_at + make_interval(secs => $2) <= now() AS past_resume,"
                " k.revoked_at, t.status FROM stream_tokens s JOIN tenants t ON t.id = s.tenant_id"
                " LEFT JOIN api_keys k ON k.id = s.key_id WHERE s.id = $1",
                token_id, self.resume_seconds)
        if not matches(row["secret_hash"] if row is not None else None, presented):
            raise _invalid("invalid stream token")
        if row["expired"] and not resuming:
            raise _invalid("this stream token expired: ask POST /v1/stream_tokens for another"
                           " (it still resumes a stream by Last-Event-ID for a while)")
        if row["past_resume"]:
            raise _invalid("this stream token expired, and is past the time it may resume a"
                           " stream: ask POST /v1/stream_tokens for another")
        if row["revoked_at"] is not None:
            raise _invalid("the API key that asked for this stream token was revoked")
        if row["status"] != "active":
            raise Forbidden("this tenant is suspended")
        return StreamGrant(row["tenant_id"], row["session_id"], row["key_id"])

    async def _check_session(self, tenant_id: str, session_id: str) -> None:
        try:
            if not is_id(session_id, "ses"):
                raise NotFound(session_id)
            await self._store.stream_version(session_id, tenant_id=tenant_id)
        except NotFound as exc:
            raise NotFound(f"session {session_id!r} not found",
                           details={"field": "session_id"}) from exc


def _invalid(message: str) -> Unauthorized:
    return Unauthorized(message, details={"field": "access_token"})
