"""Server-sent events as the model providers stream them, parsed line by line for both HTTP
adapters (``openai``, ``anthropic``). The SDK's own reader (``spool/_async/_stream.py``) is a
client of our API, not of a provider's, and stays apart.

An event is its ``event:`` name (empty without one) and its ``data:`` lines joined by newlines,
dispatched at the blank line that ends it; an event without data is not dispatched. Comments
(``:``), ``id:``, ``retry:`` and unknown fields are skipped. One space after the colon is not
part of the value. What a body holds after its last blank line is the caller's to keep
(``flush``) or drop, as the SSE spec says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str  # "" when the event named none
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line of the body, without its line ending: the event it completes, if any."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def flush(self) -> ServerSentEvent | None:
        """The event read so far (the body ended without its blank line), and a fresh start."""
        event, self._event = self._event, ""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return ServerSentEvent(event, data)
