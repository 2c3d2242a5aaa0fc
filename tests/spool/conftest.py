"""Fixtures of the tests that run ``spool`` as real processes, the API fixtures of tests/api
(``api``: the app in-process; ``live``: a uvicorn server on a free port; ``live_app``: one for
the module, in a thread), the SDK's two flavours (``flavour``: the sync ``Client`` and the
``AsyncClient`` driven by the same test code), and ``cli``: the client commands as one new
tenant's owner."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spool
from tests.api.conftest import LiveApp, api, live, live_app
from tests.conftest import ADMIN_TOKEN
from tests.helpers_cli import Spool
from tests.helpers_processes import Spawner, scratch_dir

__all__ = ["Flavour", "api", "cli", "flavour", "live", "live_app", "scratch", "spawn"]


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Starts ``spool serve`` processes; stops them, and anything left in their data dirs, at
    teardown. Each server's output is printed then: the report of a failed test shows it."""
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.teardown()
        for server in spawner.servers:
            print(f"=== spool serve {server.data_dir.name} (pid {server.pid})\n{server.output()}")


@pytest.fixture
def scratch(spawn: Spawner) -> Path:
    """A fresh dir outside pytest's tmp dir (see ``scratch_dir``), removed once the servers
    started in it are stopped."""
    base = scratch_dir()
    spawn.remove.append(base)
    return base


class Flavour:
    """One of the SDK's two clients, and what lets one test drive either: ``done`` awaits
    what the async client returns (and passes the sync one's through), ``items`` lists a
    pager or a stream's first events, ``close`` closes a client or a stream."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url
        self.cls: type[Any] = spool.AsyncClient if name == "async" else spool.Client

    def client(self, api_key: str = ADMIN_TOKEN, **options: Any) -> Any:
        return self.cls(base_url=self.base_url, api_key=api_key, **options)

    def transport(self, transport: Any) -> Any:
        """An httpx client of this flavour on ``transport``, for ``http_client=``."""
        http = httpx.AsyncClient if self.name == "async" else httpx.Client
        return http(transport=transport, timeout=30)

    @staticmethod
    async def done(value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    @staticmethod
    async def items(iterable: Any, until: str | None = None) -> list[Any]:
        """Every item of a pager (or an export), or a stream's events up to the first of
        type ``until``."""
        out: list[Any] = []
        if hasattr(iterable, "__aiter__"):
            async for item in iterable:
                out.append(item)
                if until is not None and item.type == until:
                    break
        else:
            for item in iterable:
                out.append(item)
                if until is not None and item.type == until:
                    break
        return out

    async def close(self, thing: Any) -> None:
        await self.done(thing.aclose() if self.name == "async" else thing.close())


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest, live_app: LiveApp) -> Flavour:
    return Flavour(request.param, live_app.base_url)


@pytest.fixture
def cli(live_app: LiveApp, tmp_path: Path) -> Spool:
    """``spool`` as the owner of a new tenant on the module's live app (the key and URL in
    the environment), with a home dir of its own."""
    key = live_app.key(live_app.tenant("cli"), "owner")
    return Spool(tmp_path, SPOOL_BASE_URL=live_app.base_url, SPOOL_API_KEY=key)
