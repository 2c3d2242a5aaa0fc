"""What the app keeps on ``app.state``, typed: Starlette types it ``Any``, so every route reads
the engine and the settings through these two and mypy checks what they call."""

from __future__ import annotations

from starlette.requests import Request

from engine.engine import Engine
from engine.settings import Settings


def engine_of(request: Request) -> Engine:
    """The running Engine of the app serving ``request`` (api/app.py puts it there)."""
    engine: Engine = request.app.state.engine
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
