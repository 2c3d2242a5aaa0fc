"""``Engine``: the async context manager that owns the services, the pool, the Redis client and
the background tasks, and stops them cleanly (uvicorn's Config -> Server, for the core)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import anyio
import asyncpg
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from engine.auth.access import Access
from engine.auth.agent_tokens import AgentTokens
from engine.auth.stream_tokens import StreamTokens
from engine.auth.tenants import Tenants
from engine.domain.agents import Agents
from engine.domain.approvals import Approvals
from engine.domain.audit import Audit
from engine.domain.boards import Boards
from engine.domain.budgets import Budgets
from engine.domain.sessions import Sessions
from engine.domain.tasks import Tasks
from engine.errors import SpoolError
from engine.infra.db import apply_schema, create_pool
from engine.infra.embedded import EmbeddedServices
from engine.infra.ratelimit import RateLimiter
from engine.log.dispatch import Dispatcher
from engine.log.fanout import Publisher
from engine.log.open_streams import OpenStreams
from engine.log.store import EventStore
from engine.logging import get_logger
from engine.metrics import Metrics
from engine.prices import PriceTable
from engine.projections.runner import LogPages, Projection, ProjectionRunner
from engine.projections.summaries import SessionSummaries
from engine.projections.views import VIEWS
from engine.runtime.adapters.base import ModelAdapter
from engine.runtime.adapters.registry import adapters_for, close_all
from engine.runtime.worker import Worker
from engine.settings import Settings

log = get_logger("engine")


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.database_url = settings.database_url
        self.redis_url = settings.redis_url
        self.generated_admin_token: str | None = None
        self._embedded: EmbeddedServices | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: redis.Redis | None = None
        self._reader: redis.Redis | None = None
        self._limits: redis.Redis | None = None
        self._store: EventStore | None = None
        self.publisher: Publisher | None = None
        self.dispatcher: Dispatcher | None = None
        self.worker: Worker | None = None
        self._projections: list[ProjectionRunner] = []
        self._adapters: dict[str, ModelAdapter] = {}
        self.open_streams = OpenStreams()  # this process's SSE streams, by who opened them

    async def __aenter__(self) -> Engine:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        if self.settings.embedded:
            self._embedded = EmbeddedServices(
                self.settings.data_dir,
                postgres=self.settings.database_url is None,
                redis=self.settings.redis_url is None,
            )
            await anyio.to_thread.run_sync(self._embedded.start)
            self.database_url = self.database_url or self._embedded.database_url
            self.redis_url = self.redis_url or self._embedded.redis_url
        assert self.database_url is not None and self.redis_url is not None
        self._pool = await create_pool(self.database_url, size=self.settings.db_pool_size)
        await apply_schema(self._pool)
        # Timeouts so a Redis that hangs (rather than refuses) is noticed: the dispatcher's
        # blocking read waits at most 1 s, well under the socket timeout.
        # One immediate retry: after a Redis restart each pooled connection fails its first
        # command ("Connection closed by server"); the retry reconnects.
        self._redis = redis.from_url(
            self.redis_url, socket_timeout=5, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )
        self._store = EventStore(
            self._pool, batch_max=self.settings.append_batch_max, metrics=self.metrics
        )
        self._store.start()
        self.publisher = Publisher(self._redis, self._store, self.metrics,
                                   relay_interval=self.settings.relay_seconds)
        self.publisher.start()
        # The dispatcher's blocking reads get a client of their own without retries: stopping
        # cuts its connection, and a retry would reconnect and block again.
        self._reader = redis.from_url(
            self.redis_url, socket_timeout=5, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        self.dispatcher = Dispatcher(
            self._reader, self._store, self.metrics, capacity=self.settings.sse_buffer_events,
            keepalive=self.settings.sse_keepalive_seconds,
        )
        await self.dispatcher.start()
        self.tenants = Tenants(
            self._pool, auth_cache_seconds=self.settings.auth_cache_seconds)
        self.agents = Agents(self._store, self._pool,
                             offline_seconds=self.settings.agent_offline_seconds)
        self.agent_tokens = AgentTokens(self._pool, self.agents)
        self.stream_tokens = StreamTokens(
            self._pool, self._store,
            resume_seconds=self.settings.stream_token_resume_seconds)
        # A client of its own: a count given up on (Redis hanging) must not leave a half-read
        # reply on a connection the publisher takes next.
        self._limits = redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1,
                                      retry=Retry(NoBackoff(), 0))
        self.rate_limiter = RateLimiter(self._limits, self.settings.turn_rate_limit)
        self.session_summaries = SessionSummaries(self._pool)
        self.budgets = Budgets(self._pool, self._store, self.agents,
                               prices=PriceTable(dict(self.settings.prices)),
                               wait_seconds=self.settings.budget_wait_seconds)
        self.sessions = Sessions(self._store, self.agents, self.budgets, self.rate_limiter)
        self.approvals = Approvals(self._pool, self._store, self.sessions)
        self.audit = Audit(self._store)
        self.boards = Boards(self._pool, self._store)
        self.tasks = Tasks(self._pool, self._store, self.agents, self.boards)
        self.access = Access(self._pool, self.redis_url, self._store, self.tenants,
                             self.sessions, self.open_streams,
                             recheck_seconds=self.settings.auth_cache_seconds)
        self.access.start()
        self.generated_admin_token = await self.tenants.bootstrap_admin(
            self.settings.admin_token
        )
        self._start_runtime()
        log.info("engine.started", embedded=self._embedded is not None)

    def _start_runtime(self) -> None:
        """The projections (session_runs, the runtime's work list, among them) and, unless
        SPOOL_WORKERS=0, a worker in this process. All wake when the dispatcher sees new
        events."""
        assert self._pool is not None and self.dispatcher is not None
        work_wanted = asyncio.Event()  # also set by a NOTIFY from any process (the worker's)
        self._projections = []

        pages = LogPages()  # the runners share what they read of the log

        def wake_workers(_: int) -> None:
            work_wanted.set()

        # The task reactor listens on the instance of its view that Tasks made.
        shared: dict[str, Projection] = {"tasks": self.tasks.projection}
        for name, view in VIEWS.items():
            log_moved = asyncio.Event()
            self.dispatcher.watch(log_moved)
            projection = shared.get(name) or view.make()
            runner = ProjectionRunner(
                self._pool, projection, wakeup=log_moved, metrics=self.metrics,
                on_applied=wake_workers if view.wakes_workers else None, pages=pages,
            )
            runner.start()
            self._projections.append(runner)
        self.tasks.reactor.start()
        if self.settings.workers > 0:
            self._adapters = adapters_for(self.settings)
            self.worker = Worker(
                self._pool, self.store, self.agents, self._adapters, tasks=self.tasks,
                wakeup=work_wanted, concurrency=self.settings.workers,
                lease_seconds=self.settings.lease_seconds, budgets=self.budgets,
                tenant_max_running=self.settings.tenant_max_running_turns,
                step_max_tries=self.settings.step_max_tries,
                tenant_active=self.tenants.is_active,
            )
            self.worker.start()

    async def _stop(self) -> None:
        # Stop the runtime, drain (queued appends commit and are published), then stop
        # following the fan-out, close clients, stop services.
        if hasattr(self, "access"):
            await self.access.stop()
        if self.worker is not None:
            await self.worker.stop()
            await close_all(self._adapters)
        if hasattr(self, "tasks"):
            await self.tasks.reactor.stop()
        for runner in self._projections:
            await runner.stop()
        self._projections = []
        if self._store is not None:
            await self._store.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        for client in (self._redis, self._reader, self._limits):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close()
        if self._embedded is not None:
            await anyio.to_thread.run_sync(self._embedded.stop)
        self._store = self._pool = self._redis = self._reader = self._limits = None
        self._embedded = None
        self.publisher = self.dispatcher = None
        self.worker = None

    async def stop_worker(self, grace: float) -> None:
        """The first step of a graceful stop: claim nothing more, let running turn steps finish
        (for up to ``grace`` seconds), hand the leases back. ``_stop`` does the rest."""
        if self.worker is not None:
            await self.worker.stop(grace)

    def stop_services_now(self) -> None:
        """A forced exit: ask the embedded services to stop, without waiting."""
        if self._embedded is not None:
            self._embedded.stop_now()

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise SpoolError("the engine is not started")
        return self._store

    @property
    def fanout(self) -> Dispatcher:
        if self.dispatcher is None:
            raise SpoolError("the engine is not started")
        return self.dispatcher

    async def readiness(self) -> dict[str, str]:
        """Reachability of each service: {"postgres": "ok"|"down", "redis": ...}."""
        return {"postgres": await self._check_postgres(), "redis": await self._check_redis()}

    async def _check_postgres(self) -> str:
        assert self._pool is not None
        try:
            with anyio.fail_after(2):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return "down"
        return "ok"

    async def _check_redis(self) -> str:
        assert self._redis is not None
        try:
            with anyio.fail_after(2):
                await self._redis.ping()
        except (OSError, TimeoutError, RedisError):
            return "down"
        return "ok"
