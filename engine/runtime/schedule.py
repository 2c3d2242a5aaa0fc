"""Which sessions need a worker, and who has each one.

The ``session_runs`` projection marks a session *wanted* at the position of every event a worker
must react to (a user message, a tool result, an interrupt). Being a projection, it is exactly
once and complete: an event committed while every worker was down is still found. A worker
claims a wanted session by taking its lease (``FOR UPDATE SKIP LOCKED``: two workers never get
the same one), renews the lease while it works, and marks the session done up to the position
it had seen when it claimed it. A worker that dies stops renewing; its lease expires and another
worker claims the session and carries on from the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg
import msgspec

from engine.db import connection
from engine.store import Committed

# The events a worker must react to; the worker's own events (turn_started, message_*, ...)
# are not among them.
WAKES_A_WORKER = frozenset({"user_message", "tool_result", "session_interrupted",
                            "approval_resolved"})


WORK_CHANNEL = "spool_session_runs"  # NOTIFY: sessions were marked wanted


class SessionRuns:
    """The projection. Only sessions with an agent get a row (at ``session_created``): a
    session without one only records messages, and never costs a worker anything."""

    name = "session_runs"

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool:
        created: list[tuple[str, str, int]] = []
        wanted: dict[str, int] = {}
        for tenant_id, event in events:
            if event.stream_type != "session":
                continue
            if event.type == "session_created" and _has_agent(event.data):
                created.append((event.stream_id, tenant_id, event.position))
            elif event.type in WAKES_A_WORKER:
                wanted[event.stream_id] = event.position
        if created:
            await conn.executemany(
                "INSERT INTO session_runs (session_id, tenant_id, wanted_position, done_position)"
                " VALUES ($1, $2, $3, $3) ON CONFLICT (session_id) DO NOTHING", created,
            )
        if wanted:
            changed = await conn.execute(
                "UPDATE session_runs r SET wanted_position = w.position"
                " FROM unnest($1::text[], $2::bigint[]) AS w(session_id, position)"
                " WHERE r.session_id = w.session_id",
                list(wanted), list(wanted.values()),
            )
            if changed != "UPDATE 0":  # workers in every process hear it at commit
                await conn.execute("SELECT pg_notify($1, '')", WORK_CHANNEL)
                return True
        return bool(created)


class _AgentRef(msgspec.Struct):
    agent_id: str | None = None


_agent_ref = msgspec.json.Decoder(_AgentRef)


def _has_agent(data: msgspec.Raw) -> bool:
    return _agent_ref.decode(data).agent_id is not None


class Claim(NamedTuple):
    session_id: str
    tenant_id: str
    wanted_position: int


class Leases:
    def __init__(self, pool: asyncpg.Pool, owner: str, ttl: float) -> None:
        self._pool = pool
        self.owner = owner
        self.ttl = ttl

    async def claim(self, limit: int) -> list[Claim]:
        """Up to ``limit`` wanted sessions whose lease is free or expired, now ours."""
        async with connection(self._pool, "claiming sessions") as conn:
            rows = await conn.fetch(
                "UPDATE session_runs r SET lease_owner = $1,"
                " lease_expires = now() + make_interval(secs => $2)"
                " FROM (SELECT session_id FROM session_runs"
                "       WHERE wanted_position > done_position"
                "         AND (lease_expires IS NULL OR lease_expires < now())"
                "       ORDER BY wanted_position LIMIT $3 FOR UPDATE SKIP LOCKED) free"
                " WHERE r.session_id = free.session_id"
                " RETURNING r.session_id, r.tenant_id, r.wanted_position",
                self.owner, self.ttl, limit,
            )
        return [Claim(row[0], row[1], row[2]) for row in rows]

    async def renew(self, session_id: str) -> bool:
        """Extend our lease; False if it is no longer ours (it expired and was taken)."""
        async with connection(self._pool, "renewing a lease") as conn:
            result = await conn.execute(
                "UPDATE session_runs SET lease_expires = now() + make_interval(secs => $3)"
                " WHERE session_id = $1 AND lease_owner = $2",
                session_id, self.owner, self.ttl,
            )
        return bool(result.endswith(" 1"))

    async def release(self, session_id: str, done_position: int | None,
                      retry_in: float | None = None) -> None:
        """Give the lease back, done with everything up to ``done_position``; or, with None,
        done with nothing, and not to be claimed again for ``retry_in`` seconds."""
        async with connection(self._pool, "releasing a lease") as conn:
            await conn.execute(
                "UPDATE session_runs SET done_position = greatest(done_position, $3),"
                " lease_owner = NULL,"
                " lease_expires = now() + make_interval(secs => coalesce($4::float8, 0))"
                " WHERE session_id = $1 AND lease_owner = $2",
                session_id, self.owner, done_position or 0, retry_in,
            )

    async def release_all(self) -> None:
        """Give back every lease this worker holds, done with nothing (it is stopping), and
        wake the workers of every process to take them now."""
        async with connection(self._pool, "releasing leases") as conn:
            await conn.execute(
                "UPDATE session_runs SET lease_owner = NULL, lease_expires = NULL"
                " WHERE lease_owner = $1", self.owner,
            )
            await conn.execute("SELECT pg_notify($1, '')", WORK_CHANNEL)
