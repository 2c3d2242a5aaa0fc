from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import uvicorn
from starlette.applications import Starlette

from api.app import create_app
from engine.engine import Engine
from engine.settings import Settings
from tests.api.openapi_check import check_all
from tests.api.sse_client import Frame, frames
from tests.conftest import ADMIN_TOKEN, Services


class Api:
    """An httpx client on the app, plus helpers that set up tenants and keys."""

    def __init__(self, client: httpx.AsyncClient, app: Starlette) -> None:
        self.client = client
        self.app = app  # for what a client cannot do (add a route, hang up mid-body)
        self.responses: list[httpx.Response] = []  # checked against the OpenAPI document

    async def request(self, method: str, path: str, token: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        self.responses.append(response)
        return response

    async def tenant(self, name: str = "acme") -> str:
        response = await self.request("POST", "/v1/tenants", ADMIN_TOKEN, json={"name": name})
        assert response.status_code == 201, response.text
        tenant_id: str = response.json()["id"]
        return tenant_id

    async def key(self, tenant_id: str, role: str = "owner") -> str:
        response = await self.request(
            "POST", "/v1/api_keys", ADMIN_TOKEN, json={"name": f"{role} key", "role": role},
            headers={"Spool-Tenant": tenant_id},
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key


@pytest.fixture
async def api(settings: Settings, engine: Engine) -> AsyncIterator[Api]:
    app = create_app(settings, engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://spool.test") as client:
        api = Api(client, app)
        yield api
    # Every response the test got through api.request answers an operation of the OpenAPI
    # document as it declares (checked afterwards, so as not to slow the test itself down).
    check_all(api.responses)


# --- a real server: uvicorn on a free port, for SSE and socket behaviour -----------------


class Live:
    """A uvicorn server on a free port, and helpers to use it."""

    def __init__(self, base_url: str, engine: Engine) -> None:
        self.base_url = base_url
        self.engine = engine
        # Generous: a request may wait behind 1,000 reconnecting streams on a loaded machine.
        self.client = httpx.AsyncClient(base_url=base_url, timeout=60)

    async def post(self, path: str, token: str, body: object, **headers: str) -> httpx.Response:
        return await self.client.post(path, json=body,
                                      headers={"Authorization": f"Bearer {token}", **headers})

    async def member_key(self) -> str:
        tenant = (await self.post("/v1/tenants", ADMIN_TOKEN, {"name": "t"})).json()["id"]
        response = await self.post("/v1/api_keys", ADMIN_TOKEN, {"name": "k", "role": "member"},
                                   **{"Spool-Tenant": tenant})
        key: str = response.json()["key"]
        return key

    async def session(self, key: str) -> str:
        session_id: str = (await self.post("/v1/sessions", key, {})).json()["id"]
        return session_id

    async def say(self, key: str, session_id: str, text: str) -> int:
        response = await self.post(f"/v1/sessions/{session_id}/messages", key, {"content": text})
        assert response.status_code == 202, response.text
        seq: int = response.json()["event"]["seq"]
        return seq

    @contextlib.asynccontextmanager
    async def stream(self, path: str, key: str, **headers: str) -> AsyncIterator[
        AsyncIterator[Frame]
    ]:
        async with self.client.stream(
            "GET", path, headers={"Authorization": f"Bearer {key}", **headers}
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield frames(response)


@contextlib.asynccontextmanager
async def serving(engine: Engine, settings: Settings, port: int = 0) -> AsyncIterator[Live]:
    """A uvicorn server of its own on a free port (or ``port``: a restart) for ``engine``
    (one ``spool serve`` process, in-process). Streams must be closed before it stops.
    uvicorn's keep-alive timer runs from a connection's start: with a thousand clients
    connecting on a loaded machine, its 5 s could pass before a request is read, so these
    servers allow 60 s."""
    config = uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                            log_config=None, lifespan="off", timeout_keep_alive=60,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    served = Live(f"http://127.0.0.1:{port}", engine)
    try:
        yield served
    finally:
        await served.client.aclose()
        server.should_exit = True
        await task


@pytest.fixture
async def live(settings: Settings, engine: Engine) -> AsyncIterator[Live]:
    async with serving(engine, settings) as served:
        yield served


# --- one live app for a whole module: real uvicorn on a real socket -----------------------------


class LiveApp:
    """``spool serve`` in a thread of the test process: its own event loop running the Engine
    and uvicorn on 127.0.0.1 (a free port), on a fresh database. For tests that drive the API
    from outside (a synchronous httpx client, or a tool in a subprocess) and want one server
    for many tests: module-scoped fixtures keep it up across a module."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-app", daemon=True)
        self.client = httpx.Client(timeout=30)

    def start(self) -> LiveApp:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"the live app did not start: {self._error!r}")
        self.client.base_url = httpx.URL(self.base_url)
        return self

    def stop(self) -> None:
        self.client.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(), or by the test that finds it down
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with Engine(self.settings) as engine:
            config = uvicorn.Config(create_app(self.settings, engine), host="127.0.0.1", port=0,
                                    log_config=None, lifespan="off",
                                    timeout_graceful_shutdown=1)
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    serving.result()  # raises what stopped it
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            self.base_url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
            server.should_exit = True
            await serving

    def request(self, method: str, path: str, token: str | None = None,
                **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def created(self, path: str, token: str, body: dict[str, Any], **headers: str) -> Any:
        """POST that must answer 201 (or 202): its JSON body."""
        response = self.request("POST", path, token, json=body, headers=headers)
        assert response.status_code in (201, 202), f"POST {path}: {response.text}"
        return response.json()

    def tenant(self, name: str = "acme") -> str:
        tenant_id: str = self.created("/v1/tenants", ADMIN_TOKEN, {"name": name})["id"]
        return tenant_id

    def key(self, tenant_id: str, role: str = "owner") -> str:
        key: str = self.created("/v1/api_keys", ADMIN_TOKEN, {"name": f"{role} key",
                                "role": role}, **{"Spool-Tenant": tenant_id})["key"]
        return key


@pytest.fixture(scope="module")
def live_app(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """One live app for the module, on a database of its own (Redis is flushed first: the
    other tests' fixtures flush it per test, and nothing else runs while this module does)."""

    async def prepare() -> str:
        client = redis.from_url(services.redis_url)
        await client.flushdb()
        await client.aclose()
        return await services.fresh_database()

    database_url = asyncio.run(prepare())
    settings = Settings(database_url=database_url, redis_url=services.redis_url,
                        data_dir=tmp_path_factory.mktemp("live") / "data",
                        admin_token=ADMIN_TOKEN)
    app = LiveApp(settings).start()
    try:
        yield app
    finally:
        app.stop()
