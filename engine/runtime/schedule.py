"""Who has each session that needs a worker: leases on the rows of the ``session_runs`` view
(engine/projections/session_runs.py, which marks a session *wanted*).

A worker claims a wanted session by taking its lease (claims take an advisory lock in turn: two
workers never get the same one), renews the lease while it works, and marks the session done up
to the position it had seen when it claimed it. A worker that dies stops renewing; its lease expires
and another worker claims the session and carries on from the log.

Claims are fair between tenants (round-robin by tenant, each tenant's oldest first) and no
tenant holds more than ``tenant_max_running`` leases at once, counted across every worker
process. Each claim also counts a try of the session's next step (``tries``), which a completed
step resets: the worker ends a turn whose step keeps failing.
"""

from __future__ import annotations

from typing import NamedTuple

import asyncpg

from engine.infra.db import connection
from engine.projections.session_runs import WORK_CHANNEL


class Claim(NamedTuple):
    session_id: str
    tenant_id: str
    wanted_position: int
    tries: int  # claims since the session's last completed step, this one included


# Claims in every process take this lock in turn, so the running turns a claim counts per tenant
# are not changing under it (the cap holds across processes). A claim is one short statement.
_CLAIM_LOCK = 0x5B002

# Free wanted sessions, fairly across tenants: each tenant's in the order they became wanted,
# ranked after the turns the tenant already runs (in any process), and taken lowest rank
# first: a tenant with nothing running goes before the next of a busy tenant's backlog, and no
# tenant's rank passes the cap ($4; 0: no cap). Rechecked in the UPDATE's WHERE.
_CLAIM = """
WITH running AS (
    SELECT tenant_id, count(*) AS n FROM session_runs
    WHERE lease_owner IS NOT NULL AND lease_expires >= now()
    GROUP BY tenant_id
), free AS (
    SELECT r.session_id, r.wanted_position,
           coalesce(running.n, 0)
             + row_number() OVER (PARTITION BY r.tenant_id ORDER BY r.wanted_position) AS nth
    FROM session_runs r LEFT JOIN running USING (tenant_id)
    WHERE r.wanted_position > r.done_position
      AND (r.lease_expires IS NULL OR r.lease_expires < now())
), picked AS (
    SELECT session_id FROM free WHERE $4 = 0 OR nth <= $4
    ORDER BY nth, wanted_position LIMIT $3
)
UPDATE session_runs r SET lease_owner = $1, lease_expires = now() + make_interval(secs => $2),
                          tries = r.tries + 1
FROM picked
WHERE r.session_id = picked.session_id AND r.wanted_position > r.done_position
  AND (r.lease_expires IS NULL OR r.lease_expires < now())
RETURNING r.session_id, r.tenant_id, r.wanted_position, r.tries
"""


class Leases:
    def __init__(self, pool: asyncpg.Pool, owner: str, ttl: float, *,
                 tenant_max_running: int = 0) -> None:
        self._pool = pool
        self.owner = owner
        self.ttl = ttl
        self.tenant_max_running = tenant_max_running  # 0: no cap

    async def claim(self, limit: int) -> list[Claim]:
        """Up to ``limit`` wanted sessions whose lease is free or expired, now ours: fairly
        across tenants, none past its tenant's cap of running turns."""
        async with connection(self._pool, "claiming sessions") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            rows = await conn.fetch(_CLAIM, self.owner, self.ttl, limit,
                                    self.tenant_max_running)
        return [Claim(row[0], row[1], row[2], row[3]) for row in rows]

    async def progressed(self, session_id: str) -> None:
        """A step of the session completed: its tries count from this claim again."""
        async with connection(self._pool, "counting a session's tries") as conn:
            await conn.execute(
                "UPDATE session_runs SET tries = 1 WHERE session_id = $1 AND lease_owner = $2",
                session_id, self.owner,
            )

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
                      retry_in: float | None = None, *, stopping: bool = False) -> None:
        """Give the lease back, done with everything up to ``done_position`` (its tries are
        over); or, with None, done with nothing, and not to be claimed again for ``retry_in``
        seconds. ``stopping``: the worker cut the step short, which is not the step failing,
        so the claim's try is given back."""
        async with connection(self._pool, "releasing a lease") as conn:
            await conn.execute(
                "UPDATE session_runs SET done_position = greatest(done_position, $3),"
                " lease_owner = NULL, tries = CASE WHEN $3::bigint IS NOT NULL THEN 0"
                " WHEN $5 THEN greatest(tries - 1, 0) ELSE tries END,"
                " lease_expires = now() + make_interval(secs => coalesce($4::float8, 0))"
                " WHERE session_id = $1 AND lease_owner = $2",
                session_id, self.owner, done_position, retry_in, stopping,
            )

    async def release_all(self) -> None:
        """Give back every lease this worker holds, done with nothing (it is stopping), and
        wake the workers of every process to take them now."""
        async with connection(self._pool, "releasing leases") as conn:
            await conn.execute(
                "UPDATE session_runs SET lease_owner = NULL, lease_expires = NULL,"
                " tries = greatest(tries - 1, 0)"  # stopping is not the step failing
                " WHERE lease_owner = $1", self.owner,
            )
            await conn.execute("SELECT pg_notify($1, '')", WORK_CHANNEL)
