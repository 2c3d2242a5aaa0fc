"""A worker: claims wanted sessions (up to ``concurrency`` at once), runs each until it has
nothing to do, and renews each lease while it works. One runs inside every ``spool serve`` by
default; ``spool worker`` runs more as processes of their own.

A session whose lease cannot be renewed (it expired and another worker took it) is stopped at
once; the other worker carries on from the log. A step that fails (Postgres down, a bug) gives
the lease back without marking the work done, and the session is tried again after
``retry_delay``, doubled with each try of the same step. Claims count the tries
(``session_runs.tries``, so a worker that crashes mid-step is counted too); past
``step_max_tries`` the turn ends ``failed`` instead of the step being tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

import asyncpg

from engine.domain.agents import Agents
from engine.domain.budgets import Budgets
from engine.domain.session_state import SessionState
from engine.domain.tasks import Tasks
from engine.errors import SpoolError
from engine.events import AgentConfig
from engine.ids import new_id
from engine.log.store import EventStore
from engine.logging import get_logger
from engine.projections.session_runs import WORK_CHANNEL
from engine.runtime.adapters.base import ModelAdapter
from engine.runtime.schedule import Claim, Leases
from engine.runtime.tools import ServerTools
from engine.runtime.turns import LostSession, RetryPolicy, SessionRunner

log = get_logger("runtime")
_STATES_KEPT = 1000
_MAX_BACKOFF = 60.0


class Worker:
    def __init__(
        self, pool: asyncpg.Pool, store: EventStore, agents: Agents,
        adapters: Mapping[str, ModelAdapter], *, tasks: Tasks, wakeup: asyncio.Event,
        concurrency: int = 8,
        lease_seconds: float = 10.0, poll: float = 0.5, retry_delay: float = 2.0,
        retry: RetryPolicy | None = None, budgets: Budgets | None = None,
        tenant_max_running: int = 0, step_max_tries: int = 0,
        tenant_active: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.id = new_id("wrk")
        self._tenant_active = tenant_active
        self._budgets = budgets
        self._store = store
        self._agents = agents
        self._adapters = adapters
        self._tools = ServerTools(store, tasks)  # shared by the sessions it runs
        self._wakeup = wakeup
        self._concurrency = concurrency
        self._poll = poll
        self._retry_delay = retry_delay
        self._retry = retry
        self._step_max_tries = step_max_tries  # 0: no bound
        self.leases = Leases(pool, self.id, lease_seconds, tenant_max_running=tenant_max_running)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pool = pool
        self._states: OrderedDict[tuple[str, str], SessionState] = OrderedDict()
        self._configs: dict[tuple[str, str, int], AgentConfig] = {}
        self._runners: dict[str, SessionRunner] = {}
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="spool.worker")
        self._listener = asyncio.create_task(self._listen(), name="spool.worker.listen")

    async def stop(self, grace: float = 0.0) -> None:
        """Stop claiming; let each running session finish the step it is in, for up to
        ``grace`` seconds (then it is cut short: the next worker closes a cut message from the
        log, as after a crash); give every lease back so another worker takes the session now
        rather than when its lease runs out (what this one appended is fenced, as ever)."""
        self._stopping = True
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._listener = None
        for runner in self._runners.values():
            runner.stopping = True  # no next step
        running = list(self._running.values())
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(SpoolError):
            await self.leases.release_all()

    async def _run(self) -> None:
        while True:
            # Cleared before the claim, not after: a wake-up that comes while the claim runs
            # (work marked wanted, a lease given back) must not be lost until the next poll.
            self._wakeup.clear()
            free = self._concurrency - len(self._running)
            claims: list[Claim] = []
            if free > 0:
                try:
                    claims = await self.leases.claim(free)
                except SpoolError as exc:
                    log.warning("runtime.claim_failed", error=str(exc))
            for claim in claims:
                self._running[claim.session_id] = asyncio.create_task(
                    self._work(claim), name=f"spool.session.{claim.session_id}")
            if len(claims) < free or free <= 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wakeup.wait()

    async def _listen(self) -> None:
        """Wake when the session_runs projection, in whichever process runs it, marks work
        wanted (a NOTIFY at its commit); polling stays as the fallback."""
        def wake(*_: object) -> None:
            self._wakeup.set()

        while True:
            try:
                async with self._pool.acquire() as conn:
                    closed = asyncio.Event()
                    conn.add_termination_listener(lambda *_, closed=closed: closed.set())
                    await conn.add_listener(WORK_CHANNEL, wake)
                    try:
                        await closed.wait()
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(WORK_CHANNEL, wake)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres gone: poll meanwhile, listen again later
                log.info("runtime.listen_failed", error=repr(exc))
            await asyncio.sleep(1)

    async def _work(self, claim: Claim) -> None:
        runner = SessionRunner(self._store, self._agents, self._adapters, tools=self._tools,
                               worker_id=self.id, tenant_id=claim.tenant_id,
                               session_id=claim.session_id, retry=self._retry,
                               budgets=self._budgets, tenant_active=self._tenant_active)
        key = (claim.tenant_id, claim.session_id)
        runner.state = self._states.pop(key, None)  # caught up, not folded again
        runner.configs = self._configs
        runner.tries, runner.max_tries = claim.tries, self._step_max_tries
        runner.on_progress = functools.partial(self._progressed, claim.session_id)
        runner.stopping = self._stopping
        self._runners[claim.session_id] = runner
        run = asyncio.create_task(runner.run())
        keeper = asyncio.create_task(self._keep_lease(claim.session_id, run))
        done_position: int | None = claim.wanted_position
        try:
            await run
            if self._stopping:  # it may have stopped between steps: done with nothing
                done_position = None
        except (LostSession, asyncio.CancelledError):
            done_position = None
            if not run.done():
                raise
        except Exception as exc:  # Postgres trouble, or a bug: try again later
            log.warning("runtime.session_failed", session_id=claim.session_id, error=repr(exc),
                        tries=runner.tries)
            done_position = None
        finally:
            keeper.cancel()
            if not run.done():
                run.cancel()
            self._running.pop(claim.session_id, None)
            self._runners.pop(claim.session_id, None)
            if runner.state is not None and done_position is not None:
                self._keep_state(key, runner.state)
        # stopping: claimable at once by another worker (no retry delay)
        retry_in = None if (done_position or self._stopping) else self._backoff(runner.tries)
        with contextlib.suppress(SpoolError):
            await self.leases.release(claim.session_id, done_position, retry_in=retry_in,
                                      stopping=self._stopping)
        self._wakeup.set()  # a slot is free, and the session may be wanted again

    def _backoff(self, tries: int) -> float:
        """A step that failed again waits longer (up to a minute) before its next try."""
        return float(min(self._retry_delay * 2.0 ** max(tries - 1, 0), _MAX_BACKOFF))

    async def _progressed(self, session_id: str) -> None:
        try:
            await self.leases.progressed(session_id)
        except SpoolError as exc:  # the step is done all the same; a later claim counts on
            log.warning("runtime.progress_unrecorded", session_id=session_id, error=str(exc))

    def _keep_state(self, key: tuple[str, str], state: SessionState) -> None:
        """The session as this worker last folded it: the log only grows, so the next claim
        catches it up with the new events instead of folding the whole session again."""
        if len(self._states) >= _STATES_KEPT:
            self._states.popitem(last=False)
        self._states[key] = state

    async def _keep_lease(self, session_id: str, run: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self.leases.ttl / 3)
            try:
                ours = await self.leases.renew(session_id)
            except SpoolError:
                continue  # Postgres trouble: the lease may still hold; try again
            if not ours:
                log.warning("runtime.lease_lost", session_id=session_id)
                run.cancel()
                return
