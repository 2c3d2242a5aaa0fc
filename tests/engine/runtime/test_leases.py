"""The claim query on the ``session_runs`` work list: fair across tenants, capped per tenant
across owners (worker processes), and counting the tries of a session's next step."""

from __future__ import annotations

import asyncio

import asyncpg

from engine.runtime.schedule import Leases


async def _wanted(pool: asyncpg.Pool, tenant: str, *sessions: str) -> None:
    async with pool.acquire() as conn:
        for sid in sessions:
            position = await conn.fetchval(
                "SELECT coalesce(max(wanted_position), 0) + 1 FROM session_runs")
            await conn.execute(
                "INSERT INTO session_runs (session_id, tenant_id, wanted_position, done_position)"
                " VALUES ($1, $2, $3, 0)", sid, tenant, position)


async def _tries(pool: asyncpg.Pool, sid: str) -> int:
    return int(await pool.fetchval("SELECT tries FROM session_runs WHERE session_id = $1", sid))


async def test_claims_go_round_robin_by_tenant_and_the_cap_holds_across_owners(
    pool: asyncpg.Pool,
) -> None:
    await _wanted(pool, "ten_a", *(f"ses_a{i}" for i in range(5)))
    await _wanted(pool, "ten_b", "ses_b0", "ses_b1")  # wanted after all of A's
    first = Leases(pool, "wrk_1", ttl=30, tenant_max_running=2)
    second = Leases(pool, "wrk_2", ttl=30, tenant_max_running=2)
    # Round-robin: A's oldest and B's oldest, not A's two oldest; then the older of the next.
    assert await _claimed(first, 2) == ["ses_a0", "ses_b0"]
    assert await _claimed(first, 1) == ["ses_a1"]
    # Another owner sees A at its cap: only B's next.
    assert await _claimed(second, 10) == ["ses_b1"]
    assert await second.claim(10) == []
    # A turn of A ends: its next session may run, in whichever process claims.
    await first.release("ses_a0", done_position=1)
    assert await _claimed(second, 10) == ["ses_a2"]
    # No cap: everything wanted and free.
    assert await _claimed(Leases(pool, "wrk_3", ttl=30), 10) == ["ses_a3", "ses_a4"]


async def _claimed(leases: Leases, limit: int) -> list[str]:
    return sorted(claim.session_id for claim in await leases.claim(limit))


async def test_each_claim_counts_a_try_until_a_step_completes(pool: asyncpg.Pool) -> None:
    await _wanted(pool, "ten_a", "ses_1")
    [claim] = await Leases(pool, "wrk_dead", ttl=0.01).claim(1)
    assert claim.tries == 1
    await asyncio.sleep(0.05)  # it died: its lease runs out, nothing given back
    second = Leases(pool, "wrk_2", ttl=30)
    [claim] = await second.claim(1)
    assert claim.tries == 2
    await second.progressed("ses_1")  # a step completed: counting starts at this claim
    assert await _tries(pool, "ses_1") == 1
    await second.release("ses_1", None, retry_in=0)  # the next step failed
    [claim] = await second.claim(1)
    assert claim.tries == 2
    await second.release_all()  # stopping is not a failed try
    assert await _tries(pool, "ses_1") == 1
    [claim] = await second.claim(1)
    await second.release("ses_1", done_position=claim.wanted_position)  # all done
    assert await _tries(pool, "ses_1") == 0


async def test_a_worker_stopping_mid_step_gives_its_try_back(pool: asyncpg.Pool) -> None:
    """A stop (a deploy, a restart) that cuts a step short is not the step failing: however
    many stops a long step sees, it never runs out of tries."""
    await _wanted(pool, "ten_a", "ses_1")
    for owner in range(8):  # more stops than SPOOL_STEP_MAX_TRIES' default
        leases = Leases(pool, f"wrk_{owner}", ttl=30)
        [claim] = await leases.claim(1)
        assert claim.tries == 1, owner
        await leases.release("ses_1", None, stopping=True)
