"""What the model adapter tests share: one call's chunks, and the error a failing call raises,
checked not to carry the provider key anywhere a log or a client could see it."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from engine.runtime.adapters.base import Chunk, ModelAdapter, ModelError, ModelRequest


async def chunks_of(adapter: ModelAdapter, request: ModelRequest) -> list[Chunk]:
    """Every chunk of one call (a call that stalls fails the test after 30 s)."""
    async with asyncio.timeout(30):
        return [chunk async for chunk in adapter.stream(request)]


async def failure_of(adapter: ModelAdapter, request: ModelRequest, key: str) -> ModelError:
    """The ModelError the call raises; ``key`` is nowhere in it (message, str, repr, the
    printed traceback), nor in the adapter's repr."""
    with pytest.raises(ModelError) as caught:
        await chunks_of(adapter, request)
    error = caught.value
    printed = "".join(traceback.format_exception(error))
    for text in (error.message, str(error), repr(error), printed):
        assert key not in text
    assert key not in repr(adapter)
    return error
