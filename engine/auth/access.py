"""Suspension and revocation reach what is already running, in every process.

Suspending a tenant, or revoking an API key, commits in Postgres first; then:

- this process forgets its cached authentications and closes the streams the change ends (a
  revoked key's: those it opened, and those its stream tokens opened; a suspended tenant's:
  all of them), each with a final SSE comment saying why;
- the change is published on the Redis channel ``spool:auth``: every other process does the
  same at once (the fast path);
- every process also re-checks, every ``SPOOL_AUTH_CACHE_SECONDS`` (at least every 0.25 s),
  the credentials its open streams were opened with, in one query: a change published while
  Redis was down, or while a process was (re)subscribing, still closes its streams within
  that time. Redis is never needed for the guarantee, only for speed;
- a suspension ends the tenant's turns: every running or queued turn gets a
  ``session_interrupted{reason: "tenant suspended"}`` (the runtime ends it
  ``session_done{status: cancelled, error: "tenant suspended"}``), and the runtime checks the
  tenant before it starts a turn or a step, so one submitted in the moment of the suspension
  ends the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import asyncpg
import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from engine.auth.tenants import ApiKey, Tenant, Tenants
from engine.domain.session_state import TENANT_SUSPENDED as SUSPENDED_TURN
from engine.domain.sessions import Sessions
from engine.errors import SpoolError
from engine.events import EventMeta
from engine.infra.db import connection
from engine.log.open_streams import OpenStreams
from engine.log.store import EventStore
from engine.logging import get_logger
from engine.projections.agents import NAME as SUMMARIES_VIEW
from engine.projections.runner import reached

log = get_logger("access")

CHANNEL = "spool:auth"

KEY_REVOKED = "the API key of this stream was revoked"
TENANT_SUSPENDED = "the tenant is suspended"  # a stream's closing comment
_PUBLISH_SECONDS = 1.0  # a Redis that hangs must not hold up the request (the re-check covers)
_VIEW_WAIT_SECONDS = 5.0
_PAGE = 500


class AuthChange(msgspec.Struct, frozen=True):
    kind: Literal["key_revoked", "tenant_suspended"]
    tenant_id: str
    key_id: str | None = None


_decoder = msgspec.json.Decoder(AuthChange)


class Access:
    def __init__(
        self, pool: asyncpg.Pool, redis_url: str, store: EventStore, tenants: Tenants,
        sessions: Sessions, streams: OpenStreams, *, recheck_seconds: float,
    ) -> None:
        self._pool = pool
        # A client of its own: a publish given up on (Redis hanging) must not leave a
        # half-read reply on a connection others take next. The subscription has its own
        # connection from it.
        self._redis = redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1,
                                     retry=Retry(NoBackoff(), 0))
        self._store = store
        self._tenants = tenants
        self._sessions = sessions
        self.streams = streams
        self.recheck_seconds = max(recheck_seconds, 0.25)
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._rechecker: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while the Redis subscription is live

    def start(self) -> None:
        self._listening = True
        self._listener = asyncio.create_task(self._listen(), name="spool.access.listen")
        self._rechecker = asyncio.create_task(self._recheck_loop(), name="spool.access.recheck")

    async def stop(self) -> None:
        await self.stop_listening()
        if self._rechecker is not None:
            self._rechecker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rechecker
            self._rechecker = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def stop_listening(self) -> None:
        """Stop following the channel (the re-check alone then closes revoked streams)."""
        self._listening = False  # redis-py may turn the cancellation of a read into an error
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    # --- the changes --------------------------------------------------------------------------

    async def suspend(self, tenant_id: str, *, meta: EventMeta | None = None) -> Tenant:
        tenant = await self._tenants.set_status(tenant_id, "suspended")
        await self._announce(AuthChange("tenant_suspended", tenant_id))
        await self._end_turns(tenant_id, meta)
        return tenant

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey:
        key = await self._tenants.revoke_key(tenant_id, key_id)
        await self._announce(AuthChange("key_revoked", tenant_id, key_id))
        return key

    async def _announce(self, change: AuthChange) -> None:
        self._apply(change)
        try:
            async with asyncio.timeout(_PUBLISH_SECONDS):
                await self._redis.publish(CHANNEL, msgspec.json.encode(change))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("access.publish_failed", kind=change.kind, error=type(exc).__name__)

    def _apply(self, change: AuthChange) -> None:
        self._tenants.forget_cached()
        if change.kind == "tenant_suspended":
            closed = self.streams.close_where(
                lambda o: o.tenant_id == change.tenant_id, TENANT_SUSPENDED)
        elif change.key_id is not None:  # (None would match the admin's streams)
            closed = self.streams.close_where(
                lambda o: o.key_id == change.key_id, KEY_REVOKED)
        else:
            return
        if closed:
            log.info("access.streams_closed", kind=change.kind, tenant_id=change.tenant_id,
                     streams=closed)

    async def _end_turns(self, tenant_id: str, meta: EventMeta | None) -> None:
        """Interrupt every running or queued turn of the tenant's sessions, as the session
        summaries view has them once it has caught up with the log (or after a few seconds:
        the runtime's own check catches what it has not seen)."""
        with contextlib.suppress(SpoolError):
            await reached(self._pool, SUMMARIES_VIEW, await self._store.head(),
                          _VIEW_WAIT_SECONDS)
        after = ""
        while True:
            async with connection(self._pool, "finding a suspended tenant's turns") as conn:
                rows = await conn.fetch(
                    "SELECT session_id FROM session_summaries WHERE tenant_id = $1"
                    " AND status IN ('running', 'requires_action') AND session_id > $2"
                    " ORDER BY session_id LIMIT $3", tenant_id, after, _PAGE)
            for row in rows:
                try:
                    await self._sessions.cancel_turns(tenant_id, row[0], SUSPENDED_TURN,
                                                      meta=meta)
                except SpoolError as exc:  # the runtime's check ends that turn instead
                    log.warning("access.cancel_failed", session_id=row[0], error=str(exc))
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    # --- hearing about changes ----------------------------------------------------------------

    async def _listen(self) -> None:
        """Follow the channel; after each (re)subscription re-check at once, since what was
        published while this process was not listening is lost."""
        while self._listening:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.subscribed.set()
                    await self.recheck()
                    while self._listening:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._heard(message["data"])
            except (RedisError, OSError) as exc:
                log.info("access.listen_failed", error=type(exc).__name__)
            except SpoolError as exc:  # Postgres, in the re-check
                log.info("access.recheck_failed", error=str(exc))
            self.subscribed.clear()
            if self._listening:
                await asyncio.sleep(1)

    def _heard(self, data: bytes) -> None:
        try:
            change = _decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("access.bad_message")
            return
        self._apply(change)

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_seconds)
            try:
                await self.recheck()
            except SpoolError as exc:  # Postgres down: streams stay until it answers again
                log.info("access.recheck_failed", error=str(exc))
            except Exception:  # a bug: keep re-checking, but with the traceback
                log.exception("access.recheck_error")

    async def recheck(self) -> None:
        """Close the open streams whose key was revoked or whose tenant was suspended."""
        openers = self.streams.openers()
        if not openers:
            return
        tenant_ids = sorted({o.tenant_id for o in openers})
        key_ids = sorted({o.key_id for o in openers if o.key_id is not None})
        async with connection(self._pool, "re-checking open streams") as conn:
            rows = await conn.fetch(
                "SELECT 'tenant_suspended' AS kind, id, id AS tenant_id FROM tenants"
                " WHERE id = ANY($1::text[]) AND status <> 'active'"
                " UNION ALL SELECT 'key_revoked', id, tenant_id FROM api_keys"
                " WHERE id = ANY($2::text[]) AND revoked_at IS NOT NULL", tenant_ids, key_ids)
        for kind, found, tenant_id in rows:
            if kind == "tenant_suspended":
                self._apply(AuthChange("tenant_suspended", found))
            else:
                self._apply(AuthChange("key_revoked", tenant_id, found))
