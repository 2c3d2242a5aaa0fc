"""``spool send`` (a message to a session; ``--follow``: the reply streams into the terminal as
it is generated) and ``spool tail`` (a session's events, or the whole tenant's, followed live).

``tail`` prints each event's cursor (what ``--after`` resumes from); after a dropped
connection the SDK's stream reconnects by itself, from the last id it delivered.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from spool.cli import events as event_text
from spool.cli.context import Commands, Context, UsageError, global_options
from spool.cli.output import plain


def add_commands(commands: Commands) -> None:
    send_ = commands.add_parser(
        "send", parents=[global_options()], help="send a message to a session and print the "
        "reply (--follow: as it streams)",
        description="Send a message to a session and print the reply. With --follow the reply "
        "streams in as the model writes it; tool calls and approvals are noted on stderr. Exit "
        "1 if the turn does not complete. --json: the turn's events (JSON Lines with --follow).")
    send_.add_argument("session_id", metavar="SESSION")
    send_.add_argument("text", help='the message ("-": read it from stdin)')
    send_.add_argument("-f", "--follow", action="store_true",
                       help="stream the reply as it is generated")
    send_.add_argument("--mode", choices=("enqueue", "interrupt"),
                       help="while a turn runs: queue this one after it, or interrupt it "
                       "(default: refused)")
    send_.set_defaults(run=send)
    tail_ = commands.add_parser(
        "tail", parents=[global_options()], help="follow a session's events (or --tenant: "
        "every event of the tenant), resuming after a drop",
        description="Print a session's events from the start (or after --after), then follow "
        "it live until Ctrl-C; with --tenant, the tenant's whole log by position. Each line "
        "starts with the event's cursor (#seq, or @position), which --after resumes from. A "
        "dropped connection is resumed after the last event printed.")
    tail_.add_argument("session_id", metavar="SESSION", nargs="?")
    tail_.add_argument("--tenant", action="store_true", help="the tenant's firehose instead")
    tail_.add_argument("--after", type=int, default=0, metavar="CURSOR",
                       help="start after this seq (a session) or position (--tenant)")
    tail_.set_defaults(run=tail)


def envelope(event: Any) -> dict[str, Any]:
    """The SDK's ``Event`` as the envelope the API sends (``seq``, ``type``, ``data``, ...)."""
    data = plain(event)
    return data if isinstance(data, dict) else {}


# --- send ----------------------------------------------------------------------------------


def send(ctx: Context) -> int:
    text = sys.stdin.read() if ctx.args.text == "-" else ctx.args.text
    if not text.strip():
        raise UsageError("the message is empty")
    sessions, mode = ctx.client().sessions, ctx.args.mode
    if ctx.args.follow:
        return _follow(ctx, sessions.send(ctx.args.session_id, text, follow=True, mode=mode))
    turn = [envelope(event) for event in sessions.send(ctx.args.session_id, text, mode=mode)]
    if ctx.out.json:
        ctx.out.document(turn)
    else:
        reply = "".join(str(e["data"].get("text", "")) for e in turn
                        if e.get("type") == "message_delta")
        ctx.out.text(reply + ("\n" if reply and not reply.endswith("\n") else ""))
        _notes(ctx, turn)
    return _outcome(ctx, turn[-1] if turn else None)


class _Reply:
    """Writes a streaming reply and knows whether its line is still open, so a note on
    stderr never lands in the middle of it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.open = False

    def write(self, text: str) -> None:
        if text:
            self.ctx.out.text(text)
            self.open = not text.endswith("\n")

    def end_line(self) -> None:
        if self.open:
            self.ctx.out.text("\n")
            self.open = False


def _follow(ctx: Context, stream: Iterable[Any]) -> int:
    reply = _Reply(ctx)
    last: dict[str, Any] | None = None
    for item in stream:
        last = envelope(item)
        if ctx.out.json:
            ctx.out.json_line(last)
        elif last.get("type") == "message_delta":
            reply.write(str(last["data"].get("text", "")))
        else:
            if last.get("type") in ("message_stop", "session_done") or _note_of(last):
                reply.end_line()
            _notes(ctx, [last])
    reply.end_line()
    return _outcome(ctx, last)


def _note_of(event: Mapping[str, Any]) -> str | None:
    data, kind = event.get("data") or {}, event.get("type")
    if kind == "tool_use":
        return f"tool call {data.get('name')} {event_text.summary('tool_use', data)}"
    if kind == "approval_requested":
        return (f"approval {data.get('approval_id')} needed for {data.get('name')}: "
                f"spool approvals approve {data.get('approval_id')} (or deny)")
    if kind == "tool_result":
        return f"tool result {event_text.summary('tool_result', data)}"
    return None


def _notes(ctx: Context, turn: Iterable[Mapping[str, Any]]) -> None:
    for event in turn:
        if note := _note_of(event):
            ctx.out.note(note)


def _outcome(ctx: Context, done: Mapping[str, Any] | None) -> int:
    """0 when the turn completed; else 1 with what ended it on stderr."""
    data = (done or {}).get("data") or {}
    if done is None or done.get("type") != "session_done":
        ctx.out.error("the turn's events ended before its session_done")
        return 1
    if data.get("status") == "completed":
        return 0
    ctx.out.error(f"the turn ended {data.get('status')}"
                  + (f": {data['error']}" if data.get("error") else ""))
    return 1


# --- tail ----------------------------------------------------------------------------------


def tail(ctx: Context) -> None:
    """Print the events after ``--after`` until Ctrl-C. The SDK's stream reconnects for ever
    after a drop, from the last id it delivered, and checks the ids (a session's must follow
    one another), so nothing is printed twice or skipped here."""
    if ctx.args.tenant == bool(ctx.args.session_id):
        raise UsageError("give a SESSION, or --tenant for the tenant's whole log")
    client = ctx.client()
    stream = (client.events.stream(after=ctx.args.after) if ctx.args.tenant
              else client.sessions.stream(ctx.args.session_id, after=ctx.args.after))
    with stream:
        for event in stream:
            _print_event(ctx, envelope(event), tenant=ctx.args.tenant)


def _print_event(ctx: Context, event: Mapping[str, Any], *, tenant: bool) -> None:
    if ctx.out.json:
        ctx.out.json_line(event)
    else:
        ctx.out.styled(event_text.line(event, tenant=tenant))
