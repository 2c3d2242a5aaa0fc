# Generated from spool/_async/_client.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""``Client``: a typed method for every operation of the API, grouped by resource.

    with spool.Client(base_url="http://127.0.0.1:8700", api_key="spk_...") as client:
        agent = client.agents.create(name="helper")
        ...
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from spool import _core
from spool._sync._resources.agents import Agents
from spool._sync._resources.api_keys import ApiKeys
from spool._sync._resources.approvals import Approvals
from spool._sync._resources.audit import Audit
from spool._sync._resources.boards import Boards
from spool._sync._resources.budgets import Budgets
from spool._sync._resources.events import Events
from spool._sync._resources.sessions import Sessions
from spool._sync._resources.stream_tokens import StreamTokens
from spool._sync._resources.tasks import Tasks
from spool._sync._resources.tenants import Tenants
from spool._sync._resources.usage import Usage
from spool._sync._sender import Sender
from spool._core import Settings
from spool._models import Health, Readiness
from spool._operations import operation


class Client:
    """An agentspool API client. ``base_url`` and ``api_key`` default to ``SPOOL_BASE_URL``
    and ``SPOOL_API_KEY``; ``tenant`` is sent as ``Spool-Tenant`` (the admin token acting on a
    tenant); ``max_retries`` bounds the retries of one request (see ``spool/_core.py`` for
    which); ``http_client`` is used instead of one of the client's own, and left open."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 tenant: str | None = None, timeout: float | httpx.Timeout = 30.0,
                 max_retries: int = 2, http_client: httpx.Client | None = None) -> None:
        self._sender = Sender(
            Settings.of(base_url, api_key, tenant, timeout, max_retries), http_client)
        self.tenants = Tenants(self._sender)
        self.api_keys = ApiKeys(self._sender)
        self.agents = Agents(self._sender)
        self.sessions = Sessions(self._sender)
        self.approvals = Approvals(self._sender)
        self.stream_tokens = StreamTokens(self._sender)
        self.events = Events(self._sender)
        self.audit = Audit(self._sender)
        self.boards = Boards(self._sender)
        self.tasks = Tasks(self._sender)
        self.budgets = Budgets(self._sender)
        self.usage = Usage(self._sender)

    @property
    def base_url(self) -> str:
        return self._sender.settings.base_url

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Closes the streams still open, then the connections."""
        self._sender.close()

    @operation("healthz")
    def health(self) -> Health:
        return self._sender.model(self._sender.call("healthz"), Health)

    @operation("readyz")
    def ready(self) -> Readiness:
        """Postgres and Redis reachable (``Unavailable`` when not)."""
        return self._sender.model(self._sender.call("readyz"), Readiness)

    @operation("metrics")
    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return (self._sender.send(self._sender.call("metrics"))).text

    @operation("openapi_json")
    def openapi(self) -> dict[str, Any]:
        document: dict[str, Any] = _core.json_of(
            self._sender.send(self._sender.call("openapi_json")))
        return document
