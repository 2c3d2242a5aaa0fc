"""``AsyncClient``: a typed method for every operation of the API, grouped by resource.

    async with spool.AsyncClient(base_url="http://127.0.0.1:8700", api_key="spk_...") as client:
        agent = await client.agents.create(name="helper")
        ...
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from spool import _core
from spool._async._resources.agents import AsyncAgents
from spool._async._resources.api_keys import AsyncApiKeys
from spool._async._resources.approvals import AsyncApprovals
from spool._async._resources.audit import AsyncAudit
from spool._async._resources.boards import AsyncBoards
from spool._async._resources.budgets import AsyncBudgets
from spool._async._resources.events import AsyncEvents
from spool._async._resources.sessions import AsyncSessions
from spool._async._resources.stream_tokens import AsyncStreamTokens
from spool._async._resources.tasks import AsyncTasks
from spool._async._resources.tenants import AsyncTenants
from spool._async._resources.usage import AsyncUsage
from spool._async._sender import AsyncSender
from spool._core import Settings
from spool._models import Health, Readiness
from spool._operations import operation


class AsyncClient:
    """An agentspool API client. ``base_url`` and ``api_key`` default to ``SPOOL_BASE_URL``
    and ``SPOOL_API_KEY``; ``tenant`` is sent as ``Spool-Tenant`` (the admin token acting on a
    tenant); ``max_retries`` bounds the retries of one request (see ``spool/_core.py`` for
    which); ``http_client`` is used instead of one of the client's own, and left open."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 tenant: str | None = None, timeout: float | httpx.Timeout = 30.0,
                 max_retries: int = 2, http_client: httpx.AsyncClient | None = None) -> None:
        self._sender = AsyncSender(
            Settings.of(base_url, api_key, tenant, timeout, max_retries), http_client)
        self.tenants = AsyncTenants(self._sender)
        self.api_keys = AsyncApiKeys(self._sender)
        self.agents = AsyncAgents(self._sender)
        self.sessions = AsyncSessions(self._sender)
        self.approvals = AsyncApprovals(self._sender)
        self.stream_tokens = AsyncStreamTokens(self._sender)
        self.events = AsyncEvents(self._sender)
        self.audit = AsyncAudit(self._sender)
        self.boards = AsyncBoards(self._sender)
        self.tasks = AsyncTasks(self._sender)
        self.budgets = AsyncBudgets(self._sender)
        self.usage = AsyncUsage(self._sender)

    @property
    def base_url(self) -> str:
        return self._sender.settings.base_url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the streams still open, then the connections."""
        await self._sender.aclose()

    @operation("healthz")
    async def health(self) -> Health:
        return await self._sender.model(self._sender.call("healthz"), Health)

    @operation("readyz")
    async def ready(self) -> Readiness:
        """Postgres and Redis reachable (``Unavailable`` when not)."""
        return await self._sender.model(self._sender.call("readyz"), Readiness)

    @operation("metrics")
    async def metrics(self) -> str:
        """The Prometheus text exposition."""
        return (await self._sender.send(self._sender.call("metrics"))).text

    @operation("openapi_json")
    async def openapi(self) -> dict[str, Any]:
        document: dict[str, Any] = _core.json_of(
            await self._sender.send(self._sender.call("openapi_json")))
        return document
