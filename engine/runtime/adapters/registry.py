"""The adapters a worker can use, by the name an agent's ``model.adapter`` gives: ``scripted``
always; ``openai`` when SPOOL_OPENAI_BASE_URL is set (OpenAI, vLLM, Ollama, ...); ``anthropic``
when SPOOL_ANTHROPIC_API_KEY or SPOOL_ANTHROPIC_BASE_URL is. A turn whose agent names an adapter
this server lacks ends failed, saying so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.runtime.adapters.anthropic import AnthropicAdapter
from engine.runtime.adapters.base import ModelAdapter
from engine.runtime.adapters.openai import OpenAIAdapter
from engine.runtime.adapters.scripted import ScriptedAdapter
from engine.settings import Settings

ANTHROPIC_URL = "https://api.anthropic.com"


def adapters_for(settings: Settings) -> dict[str, ModelAdapter]:
    found: dict[str, ModelAdapter] = {"scripted": ScriptedAdapter()}
    timeout = settings.model_timeout_seconds
    if settings.openai_base_url:
        found["openai"] = OpenAIAdapter(settings.openai_base_url, settings.openai_api_key,
                                        timeout=timeout)
    if settings.anthropic_api_key or settings.anthropic_base_url:
        found["anthropic"] = AnthropicAdapter(settings.anthropic_base_url or ANTHROPIC_URL,
                                              settings.anthropic_api_key, timeout=timeout)
    return found


async def close_all(adapters: Mapping[str, Any]) -> None:
    for adapter in adapters.values():
        aclose = getattr(adapter, "aclose", None)
        if aclose is not None:
            await aclose()
