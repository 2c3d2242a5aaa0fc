"""The adapters a worker can use, by the name an agent's ``model.adapter`` gives."""

from __future__ import annotations

from engine.runtime.adapters.base import ModelAdapter
from engine.runtime.adapters.scripted import ScriptedAdapter


def default_adapters() -> dict[str, ModelAdapter]:
    return {"scripted": ScriptedAdapter()}
