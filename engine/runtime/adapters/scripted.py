"""The offline, deterministic adapter: reply ``n`` of a session is step ``n`` of the agent's
script (``model.script``); past the end of the script, or without one, it echoes the last user
message. Text streams word by word (``delay`` seconds before each word, if the step sets it).
Usage counts words: input = every word of the conversation, output = the reply's words, unless
the step sets them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from engine.events import ScriptStep, Usage
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    UsageSoFar,
)

_WORDS = re.compile(r"\S+\s*|\s+")

# A scripted step holds a worker slot while it sleeps: at most this long per word, and this long
# in all (checked when an agent is created or changed; a stored config is held to it when run).
MAX_WORD_DELAY = 10.0
MAX_STEP_DELAY = 60.0


def words_of(text: str) -> list[str]:
    """The deltas a step's text streams as."""
    return _WORDS.findall(text)


class ScriptedAdapter:
    async def stream(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        step = _step(request)
        if step.error is not None:
            raise ModelError(step.error)
        words = words_of(step.text)
        delay, slept = min(step.delay, MAX_WORD_DELAY), 0.0
        input_tokens = (step.input_tokens if step.input_tokens is not None
                        else sum(len(m.text.split()) for m in request.messages))
        yield UsageSoFar(Usage(input_tokens=input_tokens))  # as Anthropic's message_start
        for word in words:
            if delay and slept < MAX_STEP_DELAY:  # a slow model, for demos and for killing
                await asyncio.sleep(delay)           # a worker mid-reply
                slept += delay
            yield TextDelta(word)
        for index, call in enumerate(step.tool_calls):
            # Ids derive from the session's model call and the call's place: a re-run of the
            # same history gives the same ids.
            yield ToolCall(f"toolu_{request.step}_{index}", call.name, dict(call.input))
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=step.output_tokens if step.output_tokens is not None else len(words),
        )
        yield Finish("tool_use" if step.tool_calls else "end_turn", usage)


def _step(request: ModelRequest) -> ScriptStep:
    script = request.model.script or []
    if request.step < len(script):
        return script[request.step]
    last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
    return ScriptStep(text=f"You said: {last_user}")
