"""The interface every model adapter implements: a request (the agent's model config, system
prompt, tools and the conversation) in, a stream of chunks out: text deltas, tool calls, and one
``Finish`` with the stop reason and the usage the provider reported."""

from __future__ import annotations

import email.utils
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from engine.domain.session_state import ChatMessage
from engine.events import ModelConfig, StopReason, ToolSpec, Usage


@dataclass(frozen=True)
class ModelRequest:
    model: ModelConfig
    system: str | None
    messages: list[ChatMessage]
    tools: list[ToolSpec]
    step: int  # how many model calls the session made before this one
    max_tokens: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    tool_use_id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finish:
    stop_reason: StopReason
    usage: Usage


@dataclass(frozen=True)
class UsageSoFar:
    """What the provider has counted so far (Anthropic: the input at ``message_start``): what
    a call cut short before its ``Finish`` is charged, with its deltas as output tokens."""

    usage: Usage


Chunk = TextDelta | ToolCall | UsageSoFar | Finish


class ModelError(Exception):
    """A model call failed. ``retryable`` errors (429, 5xx, a cut connection) are retried with
    backoff by the runtime; the others fail the turn at once."""

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds a provider asks to wait before a retry, from ``retry-after-ms`` (OpenAI,
    Anthropic) or else ``Retry-After`` (seconds or an HTTP date; a date passed is 0). None
    without a usable one: a negative, infinite or unreadable value is no hint, and a bad
    ``retry-after-ms`` leaves the word to ``Retry-After``."""
    if (ms := _seconds(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as the RFC says, not this machine's time
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _seconds(value: str | None) -> float | None:
    """A number of seconds (or milliseconds) as a header gives it; None if it is not one."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ModelAdapter(Protocol):
    def stream(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        """The reply, chunk by chunk; raises ModelError. Ends with exactly one Finish."""
        ...
