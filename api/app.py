"""``create_app(settings)``: the Starlette app. Its lifespan runs the ``Engine``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from api.errors import EXCEPTION_HANDLERS
from api.middleware import JsonBodiesOnly, RequestContextMiddleware
from api.openapi import RESPONSE_HEADERS
from api.router import IndexedRouter
from api.routes import (
    agents,
    api_keys,
    approvals,
    boards,
    browser,
    budgets,
    events,
    exports,
    health,
    openapi,
    sessions,
    streams,
    tasks,
    tenants,
)
from engine.engine import Engine
from engine.settings import Settings

# The route table: each route with the Operation that describes it (api/operation.py).
ROUTES = [*health.routes, *openapi.routes, *tenants.routes, *api_keys.routes, *agents.routes,
          *sessions.routes, *exports.routes, *approvals.routes, *streams.routes, *events.routes,
          *boards.routes, *tasks.routes, *budgets.routes, *browser.routes]


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """The app; it starts (and stops) its own Engine unless a running one is passed in."""
    owns_engine = engine is None
    engine = engine or Engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owns_engine:
            async with engine:
                yield
        else:
            yield

    middleware = [Middleware(RequestContextMiddleware, metrics=engine.metrics)]
    if settings.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["*"], allow_headers=["*"],
            expose_headers=list(RESPONSE_HEADERS),
        ))
    middleware.append(Middleware(JsonBodiesOnly))  # inside CORS: a 415 has its headers
    app = Starlette(middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    # Set before the first request builds the middleware stack around app.router.
    app.router = IndexedRouter(ROUTES, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    return app
