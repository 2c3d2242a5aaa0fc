"""The scripted adapter holds a stored step's ``delay`` to the bounds (a config stored before
they were checked still runs, within them)."""

from __future__ import annotations

import asyncio

import pytest

from engine.events import ModelConfig, ScriptStep
from engine.runtime.adapters import scripted
from engine.runtime.adapters.base import Finish, ModelRequest, TextDelta


async def test_a_stored_delay_past_the_bounds_is_held_to_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bounds small enough for a test; the stored step asks for 60 s before each word.
    monkeypatch.setattr(scripted, "MAX_WORD_DELAY", 0.05)
    monkeypatch.setattr(scripted, "MAX_STEP_DELAY", 0.2)
    step = ScriptStep(text=" ".join(f"w{i}" for i in range(100)), delay=60)
    request = ModelRequest(ModelConfig(script=[step]), None, [], [], step=0)
    async with asyncio.timeout(30):  # unbounded, this would take 100 minutes
        chunks = [chunk async for chunk in scripted.ScriptedAdapter().stream(request)]
    assert sum(isinstance(chunk, TextDelta) for chunk in chunks) == 100
    assert isinstance(chunks[-1], Finish)
