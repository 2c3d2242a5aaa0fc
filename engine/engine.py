"""``Engine``: the async context manager that owns the services, the pool, the Redis clients and
the background tasks, and stops them cleanly (uvicorn's Config -> Server, for the core).

Starting is three steps: connect (Postgres, embedded or not, with the schema applied; Redis),
build (every service, nothing running), start (each service in order). Whatever came up is kept
in one list, in order, and stopping walks it backwards: the access checks and the runtime stop
first, the log drains (queued appends commit, then are published), the fan-out stops, then the
clients and the embedded services.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from engine.debug.state_view import SessionStateView, state_at
from engine.domain.agents import Agents
from engine.domain.approvals import Approvals
from engine.domain.audit import Audit
from engine.domain.boards import Boards
from engine.domain.budgets import Budgets
from engine.domain.exports import Exports
from engine.domain.imports import Imports
from engine.domain.sessions import Sessions
from engine.domain.tasks import Tasks
from engine.errors import NotFound, SpoolError
from engine.ids import is_id
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


@dataclass(frozen=True)
class _Service:
    """Something the engine runs. Started in the order ``Engine._start`` brings them up and
    stopped in the reverse, so what depends on another stops first."""

    name: str  # for a person reading ``Engine._running``
    start: Callable[[], Awaitable[None] | None]
    stop: Callable[[], Awaitable[None]]


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.database_url = settings.database_url
        self.redis_url = settings.redis_url
        self.generated_admin_token: str | None = None
        self.open_streams = OpenStreams()  # this process's SSE streams, by who opened them
        # Connected (``_connect``): None before the start and after the stop.
        self._embedded: EmbeddedServices | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: redis.Redis | None = None
        self._reader: redis.Redis | None = None
        self._limits: redis.Redis | None = None
        # Built (``_build``). The log's three and the worker are None outside start..stop.
        self._store: EventStore | None = None
        self.publisher: Publisher | None = None
        self.dispatcher: Dispatcher | None = None
        self.worker: Worker | None = None  # None also when SPOOL_WORKERS=0
        self._projections: list[ProjectionRunner] = []
        self._adapters: dict[str, ModelAdapter] = {}
        # The services the API calls: there once the engine has started.
        self.tenants: Tenants
        self.agents: Agents
        self.agent_tokens: AgentTokens
        self.stream_tokens: StreamTokens
        self.rate_limiter: RateLimiter
        self.session_summaries: SessionSummaries
        self.budgets: Budgets
        self.sessions: Sessions
        self.approvals: Approvals
        self.audit: Audit
        self.boards: Boards
        self.tasks: Tasks
        self.exports: Exports
        self.imports: Imports
        self.access: Access
        self._running: list[_Service] = []  # what is up, in the order it came up

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
        """Connect (Postgres with the schema applied, Redis), build every service, start them
        in order."""
        await self._connect()
        self._build()
        self.generated_admin_token = await self.tenants.bootstrap_admin(
            self.settings.admin_token
        )
        for service in self._services():
            await self._bring_up(service)
        log.info("engine.started", embedded=self._embedded is not None)

    async def _bring_up(self, service: _Service) -> None:
        started = service.start()
        if started is not None:
            await started
        self._running.append(service)

    # --- connect: Postgres and Redis (embedded unless their URLs are set) ----------------------

    async def _connect(self) -> None:
        if self.settings.embedded:
            embedded = EmbeddedServices(
                self.settings.data_dir,
                postgres=self.settings.database_url is None,
                redis=self.settings.redis_url is None,
            )
            await self._bring_up(_Service(
                "embedded services", functools.partial(anyio.to_thread.run_sync, embedded.start),
                functools.partial(anyio.to_thread.run_sync, embedded.stop)))
            self._embedded = embedded
            self.database_url = self.database_url or embedded.database_url
            self.redis_url = self.redis_url or embedded.redis_url
        await self._bring_up(_Service("postgres pool", self._open_pool, self._close_pool))
        assert self._pool is not None
        await apply_schema(self._pool)
        await self._bring_up(_Service("redis clients", self._open_redis, self._close_redis))

    async def _open_pool(self) -> None:
        assert self.database_url is not None
        self._pool = await create_pool(self.database_url, size=self.settings.db_pool_size)

    async def _close_pool(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close()

    def _open_redis(self) -> None:
        assert self.redis_url is not None
        # Timeouts so a Redis that hangs (rather than refuses) is noticed: the dispatcher's
        # blocking read waits at most 1 s, well under the socket timeout.
        # One immediate retry: after a Redis restart each pooled connection fails its first
        # command ("Connection closed by server"); the retry reconnects.
        self._redis = redis.from_url(
            self.redis_url, socket_timeout=5, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )
        # The dispatcher's blocking reads get a client of their own without retries: stopping
        # cuts its connection, and a retry would reconnect and block again.
        self._reader = redis.from_url(
            self.redis_url, socket_timeout=5, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        # The rate limiter's, too: a count given up on (Redis hanging) must not leave a
        # half-read reply on a connection the publisher takes next.
        self._limits = redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1,
                                      retry=Retry(NoBackoff(), 0))

    async def _close_redis(self) -> None:
        for client in (self._redis, self._reader, self._limits):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    # --- build: every service, nothing running yet ---------------------------------------------

    def _build(self) -> None:
        assert self._pool is not None and self._redis is not None
        assert self._reader is not None and self._limits is not None
        assert self.redis_url is not None
        settings, pool = self.settings, self._pool
        store = self._store = EventStore(pool, batch_max=settings.append_batch_max,
                                         metrics=self.metrics)
        self.publisher = Publisher(self._redis, store, self.metrics,
                                   relay_interval=settings.relay_seconds)
        self.dispatcher = Dispatcher(
            self._reader, store, self.metrics, capacity=settings.sse_buffer_events,
            keepalive=settings.sse_keepalive_seconds,
        )
        self.tenants = Tenants(pool, auth_cache_seconds=settings.auth_cache_seconds)
        self.agents = Agents(store, pool, offline_seconds=settings.agent_offline_seconds)
        self.agent_tokens = AgentTokens(pool, self.agents)
        self.stream_tokens = StreamTokens(
            pool, store, resume_seconds=settings.stream_token_resume_seconds)
        self.rate_limiter = RateLimiter(self._limits, settings.turn_rate_limit)
        self.session_summaries = SessionSummaries(pool)
        self.budgets = Budgets(pool, store, self.agents, prices=PriceTable(dict(settings.prices)),
                               wait_seconds=settings.budget_wait_seconds)
        self.sessions = Sessions(store, self.agents, self.budgets, self.rate_limiter)
        self.approvals = Approvals(pool, store, self.sessions)
        self.audit = Audit(store)
        self.boards = Boards(pool, store)
        self.tasks = Tasks(pool, store, self.agents, self.boards)
        self.exports = Exports(store, self.agents, page_size=settings.export_page_events)
        self.imports = Imports(store)
        self.access = Access(pool, self.redis_url, store, self.tenants, self.sessions,
                             self.open_streams, recheck_seconds=settings.auth_cache_seconds)
        self._build_runtime()

    def _build_runtime(self) -> None:
        """The projections (session_runs, the runtime's work list, among them) and, unless
        SPOOL_WORKERS=0, a worker in this process. All wake when the dispatcher sees new
        events."""
        assert self._pool is not None and self.dispatcher is not None
        work_wanted = asyncio.Event()  # also set by a NOTIFY from any process (the worker's)
        pages = LogPages()  # the runners share what they read of the log

        def wake_workers(_: int) -> None:
            work_wanted.set()

        # The task reactor listens on the instance of its view that Tasks made.
        shared: dict[str, Projection] = {"tasks": self.tasks.projection}
        self._projections = []
        for name, view in VIEWS.items():
            log_moved = asyncio.Event()
            self.dispatcher.watch(log_moved)
            self._projections.append(ProjectionRunner(
                self._pool, shared.get(name) or view.make(), wakeup=log_moved,
                metrics=self.metrics, on_applied=wake_workers if view.wakes_workers else None,
                pages=pages,
            ))
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

    # --- start and stop: one ordered list ------------------------------------------------------

    def _services(self) -> list[_Service]:
        """What runs, in start order; ``_stop`` stops them in the reverse: the access checks
        and the runtime first, then the log drains (queued appends commit, then are
        published), then the fan-out stops, then the clients and the embedded services."""
        assert self._store is not None and self.publisher is not None
        assert self.dispatcher is not None
        services = [
            _Service("dispatcher", self.dispatcher.start, self.dispatcher.stop),
            _Service("publisher", self.publisher.start, self.publisher.stop),
            _Service("appender", self._store.start, self._store.stop),
            _Service("projections", self._start_projections, self._stop_projections),
            _Service("task reactor", self.tasks.reactor.start, self.tasks.reactor.stop),
        ]
        if self.worker is not None:
            services.append(_Service("worker", self.worker.start, self._stop_worker))
        services.append(_Service("access", self.access.start, self.access.stop))
        return services

    def _start_projections(self) -> None:
        for runner in self._projections:
            runner.start()

    async def _stop_projections(self) -> None:
        for runner in self._projections:
            await runner.stop()

    async def _stop_worker(self) -> None:
        assert self.worker is not None
        await self.worker.stop()
        await close_all(self._adapters)
        self._adapters = {}

    async def _stop(self) -> None:
        while self._running:
            await self._running.pop().stop()
        await close_all(self._adapters)  # built, but the start failed before the worker's
        self._adapters = {}
        self._projections = []
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

    async def session_state(self, tenant_id: str, session_id: str,
                            at: int | None) -> SessionStateView:
        """The session's state as of event ``at`` (None: its last), for debugging: ``state_at``,
        after turning away an id that is no session's (NotFound, as for an unknown one)."""
        if not is_id(session_id, "ses"):
            raise NotFound(f"session {session_id!r} not found")
        return await state_at(self.store, tenant_id, session_id, at)

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
