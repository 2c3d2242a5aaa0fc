"""``spool replay``: print a session's timeline, its state at an event, or follow it live. The
timeline, the state and the reading come from ``engine.debug`` (``timeline``, ``state_view``,
``reader``); this module only turns them into lines (or JSON lines, with ``--json``)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any, TextIO

import msgspec

from engine.debug.reader import SessionReader
from engine.debug.state_view import SessionStateView
from engine.debug.timeline import (
    AnyEntry,
    ApprovalRequestedEntry,
    ApprovalResolvedEntry,
    ArchivedEntry,
    InterruptedEntry,
    MessageEntry,
    OtherEntry,
    SessionCreatedEntry,
    SubmittedEntry,
    Timeline,
    ToolResultEntry,
    ToolUseEntry,
    TurnDoneEntry,
    TurnStartedEntry,
)

_encoder = msgspec.json.Encoder()


async def replay(url: str, session_id: str, *, at: int | None, follow: bool, as_json: bool,
                 rerun: bool = False, out: TextIO = sys.stdout) -> int:
    """0, or 1 (after saying why) for a session that does not exist or an ``at`` it lacks, or
    a re-run that differs from the log."""
    from engine.errors import InvalidRequest, NotFound
    from engine.infra.db import create_pool

    pool = await create_pool(url, size=2)
    try:
        try:
            reader = await SessionReader.open(pool, session_id)
            if at is not None:
                view = await reader.state_at(at)
                _print(out, [_encoder.encode(view).decode()] if as_json else state_lines(view))
                return 0
            if rerun:
                return await _rerun(reader, as_json, out)
        except (NotFound, InvalidRequest) as exc:
            print(f"spool: {exc}", file=sys.stderr)
            return 1
        printer = _Printer(out, as_json)
        timeline = Timeline()
        events = await reader.events()
        if not as_json:
            _print(out, [f"session {session_id} (tenant {reader.tenant_id}): {len(events)} "
                         "events" + (", following (Ctrl-C to stop)" if follow else "")])
        printer.entries([entry for event in events for entry in timeline.feed(event)])
        if follow:
            printer.entries(timeline.settle())
            await _follow(reader, timeline, printer, after=timeline.last_seq)
        printer.entries(timeline.finish())
        return 0
    finally:
        await pool.close()


async def _rerun(reader: SessionReader, as_json: bool, out: TextIO) -> int:
    from engine.debug.rerun import rerun

    events = await reader.events()
    report = await rerun(events, await reader.agent_config(events[0]))
    if as_json:
        _print(out, [_encoder.encode(report).decode()])
    elif report.difference is None:
        _print(out, [f"deterministic: {report.matched} of {report.events} events match"])
    else:
        diff = report.difference
        _print(out, [f"differs at #{diff.seq} ({report.matched} events match before it): "
                     f"{diff.note}",
                     f"  recorded: {_json(diff.expected)}",
                     f"  re-run:   {_json(diff.got) if diff.got is not None else '(nothing)'}"])
    return 0 if report.deterministic else 1


async def _follow(reader: SessionReader, timeline: Timeline, printer: _Printer, *,
                  after: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async for batch in reader.follow(after=after, stop=stop):
            entries = [entry for event in batch for entry in timeline.feed(event)]
            printer.entries(entries + timeline.settle())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _print(out: TextIO, lines: list[str]) -> None:
    if lines:
        out.write("".join(f"{line}\n" for line in lines))
        out.flush()


class _Printer:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self._out = out
        self._json = as_json

    def entries(self, entries: list[AnyEntry]) -> None:
        if self._json:
            _print(self._out, [_encoder.encode(entry).decode() for entry in entries])
            return
        lines: list[str] = []
        for entry in entries:
            if isinstance(entry, TurnStartedEntry):
                lines.append("")  # a turn's lines as one block
            lines.append(entry_line(entry))
        _print(self._out, lines)


# --- one line per entry -----------------------------------------------------------------------


def entry_line(entry: AnyEntry) -> str:
    """``  #seq  HH:MM:SS.mmm  +since  [indent]what``; lines inside a turn are indented."""
    clock = entry.at.strftime("%H:%M:%S.%f")[:-3]
    inside = entry.turn is not None and not isinstance(
        entry, SubmittedEntry | TurnStartedEntry | TurnDoneEntry)
    return (f"{'#' + str(entry.seq):>6}  {clock}  {f'+{entry.since_previous:.3f}s':>9}  "
            f"{'  ' if inside else ''}{describe(entry)}")


def describe(entry: AnyEntry) -> str:
    turn = f"turn {entry.turn}" if entry.turn is not None else f"turn {entry.turn_id}"
    match entry:
        case SessionCreatedEntry():
            agent = (f"agent {entry.agent_id} v{entry.agent_version}" if entry.agent_id
                     else "no agent: messages are only recorded")
            title = f", {_quote(entry.title)}" if entry.title else ""
            return f"session created ({agent}{title})"
        case SubmittedEntry():
            return f"{turn} submitted ({entry.turn_id}): {_quote(entry.text)}"
        case TurnStartedEntry():
            return f"{turn} started by {entry.worker}"
        case MessageEntry():
            return _message(entry)
        case ToolUseEntry():
            return (f"  tool call {entry.tool_use_id} {entry.name} {_json(entry.input)} "
                    f"({entry.executor})")
        case ApprovalRequestedEntry():
            return f"  approval {entry.approval_id} requested for {entry.tool_use_id}"
        case ApprovalResolvedEntry():
            reason = f": {_quote(entry.reason)}" if entry.reason else ""
            return f"approval {entry.approval_id} {entry.decision}{reason}"
        case ToolResultEntry():
            name = f" ({entry.name})" if entry.name else ""
            error = " ERROR" if entry.is_error else ""
            return f"tool result {entry.tool_use_id}{name}{error}: {_quote(entry.text)}"
        case InterruptedEntry():
            return f"{turn} interrupted: {entry.reason}"
        case TurnDoneEntry():
            error = f": {entry.error}" if entry.error else ""
            calls = "call" if entry.model_calls == 1 else "calls"
            return (f"{turn} {entry.status}{error} after {entry.duration:.3f}s "
                    f"({entry.model_calls} model {calls}, {entry.tokens} tokens, "
                    f"{_usd(entry.cost_nanos)})")
        case ArchivedEntry():
            return "session archived"
        case OtherEntry():
            return entry.type
    return type(entry).__name__


def _message(entry: MessageEntry) -> str:
    if entry.stop_reason is None:
        return (f"model {entry.model} {entry.message_id} (no stop yet: still streaming, or "
                f"cut): {_quote(entry.text)}")
    usage = entry.usage
    facts: list[str] = [entry.stop_reason]
    if usage is not None:
        facts.append(f"{usage.input_tokens} in / {usage.output_tokens} out")
        if usage.cache_read_tokens or usage.cache_write_tokens:
            facts.append(f"cache {usage.cache_read_tokens} read / "
                         f"{usage.cache_write_tokens} written")
    if entry.cost_nanos is not None:
        facts.append(_usd(entry.cost_nanos))
    if entry.duration is not None:
        facts.append(f"{entry.duration:.3f}s")
    return f"model {entry.model}: {_quote(entry.text)} ({', '.join(facts)})"


def _quote(text: str | None) -> str:
    return json.dumps(text or "", ensure_ascii=False)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _usd(cost_nanos: int) -> str:
    return f"${cost_nanos / 1e9:.6f}"


# --- the state at an event --------------------------------------------------------------------


def state_lines(view: SessionStateView) -> list[str]:
    agent = (f"agent {view.agent_id} v{view.agent_version}" if view.agent_id else "no agent")
    usage = view.usage
    lines = [
        f"session {view.session_id} at #{view.at} of {view.last_seq} "
        f"({view.at_time.isoformat()}): {view.status}",
        f"{agent}; {view.model_calls} model calls; {usage.input_tokens} in / "
        f"{usage.output_tokens} out tokens; {_usd(view.cost_nanos)}",
        "turns:" if view.turns else "turns: none",
    ]
    for turn in view.turns:
        ended = f"..#{turn.ended_seq}" if turn.ended_seq else ""
        error = f" ({turn.error})" if turn.error else ""
        lines.append(f"  {turn.number} {turn.turn_id} {turn.status}{error}: "
                     f"{turn.model_calls} model calls, {turn.tokens} tokens, "
                     f"{_usd(turn.cost_nanos)} (#{turn.submitted_seq}{ended}) "
                     f"{_quote(turn.text)}")
    current = view.current
    if current is None:
        lines.append("current turn: none")
    else:
        lines.append(f"current turn {current.number} {current.turn_id}"
                     f"{' (interrupted)' if current.interrupted else ''}: "
                     f"{current.model_calls} model calls, last stop {current.last_stop}")
        if current.open_message is not None:
            open_message = current.open_message
            lines.append(f"  open message {open_message.message_id}: "
                         f"{_quote(open_message.text)}")
        for call in current.tool_calls:
            approval = f", approval {call.approval}" if call.approval else ""
            lines.append(f"  tool call {call.tool_use_id} {call.name} {_json(call.input)} "
                         f"({call.executor}{approval})")
        if current.pending_tool_use_ids:
            lines.append(f"  waiting on the client: {', '.join(current.pending_tool_use_ids)}")
        if current.waiting_on_approvals:
            lines.append(f"  waiting on a human: {', '.join(current.waiting_on_approvals)}")
    lines.append("queue:" if view.queue else "queue: empty")
    for queued in view.queue:
        removed = " (removed)" if queued.interrupted else ""
        lines.append(f"  {queued.turn_id}{removed}: {_quote(queued.text)}")
    lines.append("conversation (what the next model call is sent):")
    for message in view.conversation:
        calls = "".join(f" + {c.name}({c.tool_use_id}) {_json(c.input)}"
                        for c in message.tool_calls)
        who = (f"tool {message.tool_use_id}{' ERROR' if message.is_error else ''}"
               if message.role == "tool" else message.role)
        lines.append(f"  {who}: {_quote(message.text)}{calls}")
    return lines
