"""Server-sent events parsed as the WHATWG HTML spec (9.2.6) says, incrementally, from the bytes
of a response: ``SSEParser.feed`` gives each dispatched ``SSEMessage``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEMessage", "SSEParser"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched server-sent event, before any JSON decoding."""

    id: str  # the last event ID buffer ("" when the server never set one)
    event: str
    data: str


class SSEParser:
    """An incremental event-stream parser, as the WHATWG HTML spec (9.2.6) says: lines end in
    CRLF, LF or CR (also split across chunks); a leading BOM is dropped; ``:`` lines are comments;
    ``data`` lines are joined by ``"\\n"``; an ``id`` holding NUL is ignored and the id persists
    across events; ``retry`` must be all ASCII digits; a blank line dispatches (nothing when the
    data buffer is empty); an unterminated event at the end of the stream is discarded."""

    def __init__(self) -> None:
        self.retry: int | None = None  # the latest valid ``retry:`` (ms)
        self.last_id = ""
        self.last_comment: str | None = None
        self._tail = b""
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        if not chunk:
            return []
        self._after_cr = chunk[-1:] == b"\r"
        buffer = self._tail + chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._tail = buffer
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        out: list[SSEMessage] = []
        for raw in lines:
            message = self._line(raw.decode("utf-8", "replace"))
            if message is not None:
                out.append(message)
        return out

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            self.last_comment = line[1:].removeprefix(" ")
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():  # "".isdigit() is False
            self.retry = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SSEMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEMessage(self.last_id, event or "message", "\n".join(data))
