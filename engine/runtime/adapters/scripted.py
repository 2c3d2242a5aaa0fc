"""The offline, deterministic adapter: reply ``n`` of a session is step ``n`` of the agent's
script (``model.script``); past the end of the script, or without one, it echoes the last user
message. Text streams word by word (``delay`` seconds before each word, if the step sets it).
Usage counts words: input = every word of the conversation, output = the reply's words, unless
the step sets them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from engine.events import MAX_STEP_DELAY, MAX_WORD_DELAY, ScriptStep, Usage, words_of
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    UsageSoFar,
)


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
