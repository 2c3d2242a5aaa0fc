"""One event as one line of text, for ``tail``, ``sessions events`` and ``send``: its cursor
(a session's ``#seq``, the tenant log's ``@position``: what ``--after`` resumes from), its time,
its type and what it says, in a few words."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rich.text import Text

TYPE_STYLES = {
    "user_message": "bold cyan", "message_start": "blue", "message_delta": "",
    "message_stop": "blue", "tool_use": "magenta", "tool_result": "magenta",
    "approval_requested": "yellow", "approval_resolved": "yellow", "session_done": "bold green",
    "session_interrupted": "red", "session_archived": "dim",
}
WIDTH = 120  # a summary is cut here: the whole event is what --json prints


def line(event: Mapping[str, Any], *, tenant: bool = False) -> Text:
    """``#seq  HH:MM:SS.mmm  type  summary`` (``@position  stream  type ...`` on the tenant
    log); plain text and colour in one, so a pipe gets the same words without the escapes."""
    kind = str(event.get("type", "?"))
    created = str(event.get("created_at") or "")[11:23]
    cursor = (f"@{event.get('position')}  {event.get('stream_id')}" if tenant
              else f"#{event.get('seq')}")
    text = Text(f"{cursor}  {created}  ", style="dim")
    style = TYPE_STYLES.get(kind, "")
    if kind == "session_done" and (event.get("data") or {}).get("status") != "completed":
        style = "bold red"
    text.append(kind, style=style)
    said = summary(kind, event.get("data") or {})
    if said:
        text.append("  " + said)
    return text


def summary(kind: str, data: Mapping[str, Any]) -> str:
    describe = _SUMMARIES.get(kind)
    said = describe(data) if describe else _compact({k: v for k, v in data.items()
                                                     if k != "type"})
    return said if len(said) <= WIDTH else said[: WIDTH - 1] + "…"


def content_text(content: Any) -> str:
    """The text of a message's or a tool result's content (a string or text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content
                       if isinstance(block, Mapping))
    return ""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _usage(data: Mapping[str, Any]) -> str:
    usage = data.get("usage") or {}
    return f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out"


_SUMMARIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "user_message": lambda d: _compact(content_text(d.get("content"))),
    "turn_started": lambda d: f"{d.get('turn_id')} by {d.get('worker')}",
    "message_start": lambda d: str(d.get("model", "")),
    "message_delta": lambda d: _compact(d.get("text", "")),
    "message_stop": lambda d: f"{d.get('stop_reason')} ({_usage(d)})",
    "tool_use": lambda d: f"{d.get('tool_use_id')} {d.get('name')} {_compact(d.get('input'))}"
                          f" ({d.get('executor')})",
    "approval_requested": lambda d: f"{d.get('approval_id')} for {d.get('name')} "
                                    f"{_compact(d.get('input'))}",
    "approval_resolved": lambda d: f"{d.get('approval_id')} {d.get('decision')}"
                                   + (f": {_compact(d['reason'])}" if d.get("reason") else ""),
    "tool_result": lambda d: f"{d.get('tool_use_id')}"
                             + (" (error)" if d.get("is_error") else "")
                             + f" {_compact(content_text(d.get('content')))}",
    "spend_recorded": lambda d: f"{d.get('model')}: {d.get('tokens')} tokens",
    "session_done": lambda d: f"{d.get('status')}"
                              + (f": {d['error']}" if d.get("error") else ""),
    "session_interrupted": lambda d: str(d.get("reason") or ""),
}
