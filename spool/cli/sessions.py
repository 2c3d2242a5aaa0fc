"""``spool sessions``: a session is an agent's conversation, its log the truth. ``spool send``
and ``spool tail`` (spool/cli/follow.py) talk to one and watch it."""

from __future__ import annotations

from spool.cli import events as event_text
from spool.cli.context import (
    Commands,
    Context,
    UsageError,
    action,
    add_limit,
    group,
    pairs,
    read_json,
)
from spool.cli.output import Column, columns, plain, usd

COLUMNS = columns("id", "status", ("AGENT", "agent_id"), "title", "turns", "tokens",
                  Column("USD", "usd", usd), "updated_at")
QUEUE_COLUMNS = columns("turn_id", "content")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "sessions", "sessions: list, create, show, state, events, queue, "
                    "dequeue, interrupt, archive, tool-results (and `spool send`, `spool tail`)")
    listing = action(actions, "list", "list the sessions", list_)
    listing.add_argument("--agent", dest="agent_id", help="only this agent's")
    listing.add_argument("--status", choices=("idle", "running", "requires_action", "archived"))
    add_limit(listing)
    _add_create(actions)
    action(actions, "show", "show a session", show).add_argument("session_id", metavar="SESSION")
    state_ = action(actions, "state", "the session's folded state (turns, conversation), "
                    "now or as of an event", state)
    state_.add_argument("session_id", metavar="SESSION")
    state_.add_argument("--at", type=int, metavar="SEQ", help="as of this event")
    events_ = action(actions, "events", "the session's events (a page; `spool tail` follows)",
                     list_events)
    events_.add_argument("session_id", metavar="SESSION")
    events_.add_argument("--after", type=int, default=0, metavar="SEQ",
                         help="only the events after this one")
    add_limit(events_)
    action(actions, "queue", "the turns waiting behind the running one",
           queue).add_argument("session_id", metavar="SESSION")
    dequeue_ = action(actions, "dequeue", "remove a queued turn", dequeue)
    dequeue_.add_argument("session_id", metavar="SESSION")
    dequeue_.add_argument("turn_id", metavar="TURN")
    action(actions, "interrupt", "interrupt the running turn",
           interrupt).add_argument("session_id", metavar="SESSION")
    action(actions, "archive", "archive a session", archive).add_argument("session_id",
                                                                           metavar="SESSION")
    _add_tool_results(actions)


def _add_create(actions: Commands) -> None:
    create_ = action(actions, "create", "create a session (on an agent, or none)", create)
    create_.add_argument("--agent", dest="agent_id", help="the agent that answers")
    create_.add_argument("--agent-version", type=int, metavar="N",
                         help="pin this version of the agent (default: its current one)")
    create_.add_argument("--title")
    create_.add_argument("--metadata", action="append", metavar="KEY=VALUE")


def _add_tool_results(actions: Commands) -> None:
    results = action(actions, "tool-results", "answer the client tools a turn waits on",
                     tool_results, "Answer client tool calls: --file holds a JSON list of "
                     '{"tool_use_id", "content", "is_error"?}, or give one with --result.')
    results.add_argument("session_id", metavar="SESSION")
    results.add_argument("-f", "--file", help="a JSON list of results (\"-\": stdin)")
    results.add_argument("--result", nargs=2, action="append", metavar=("TOOL_USE_ID", "TEXT"),
                         help="one result as text (repeat for more)")
    results.add_argument("--error", action="store_true", help="the --result(s) are errors")


def list_(ctx: Context) -> None:
    filters = {key: value for key in ("agent_id", "status")
               if (value := getattr(ctx.args, key))}
    ctx.out.table(ctx.page(ctx.client().sessions.list(**filters)), COLUMNS)


def create(ctx: Context) -> None:
    fields = {key: value for key in ("agent_id", "agent_version", "title")
              if (value := getattr(ctx.args, key)) is not None}
    if ctx.args.metadata:
        fields["metadata"] = pairs(ctx.args.metadata, "--metadata")
    ctx.out.record(ctx.client().sessions.create(**fields))


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().sessions.get(ctx.args.session_id))


def state(ctx: Context) -> None:
    ctx.out.record(ctx.client().sessions.state(ctx.args.session_id, at=ctx.args.at))


def list_events(ctx: Context) -> None:
    found = ctx.page(ctx.client().sessions.events(ctx.args.session_id,
                                                  after=ctx.args.after or None))
    if ctx.out.json:
        ctx.out.document(list(found))
        return
    for event in found:
        ctx.out.styled(event_text.line(plain(event)))


def queue(ctx: Context) -> None:
    ctx.out.table(_queued(ctx.client().sessions.queue(ctx.args.session_id)), QUEUE_COLUMNS)


def _queued(answer: object) -> list[object]:
    data = plain(answer)
    turns = data.get("data", []) if isinstance(data, dict) else data
    return [{**turn, "content": event_text.content_text(turn.get("content"))}
            for turn in turns]


def dequeue(ctx: Context) -> None:
    answer = ctx.client().sessions.remove_queued(ctx.args.session_id, ctx.args.turn_id)
    ctx.out.done(f"removed turn {ctx.args.turn_id} from the queue", answer)


def interrupt(ctx: Context) -> None:
    event = ctx.client().sessions.interrupt(ctx.args.session_id)  # None: nothing to stop
    ctx.out.done(f"interrupted session {ctx.args.session_id}" if event is not None
                 else f"session {ctx.args.session_id} had no turn running", {"event": event})


def archive(ctx: Context) -> None:
    answer = ctx.client().sessions.archive(ctx.args.session_id)
    ctx.out.done(f"archived session {ctx.args.session_id}", answer)


def tool_results(ctx: Context) -> None:
    results = read_json(ctx.args.file) if ctx.args.file else []
    if not isinstance(results, list):
        raise UsageError("--file: expected a JSON list of tool results")
    results += [{"tool_use_id": use, "content": text, "is_error": ctx.args.error}
                for use, text in ctx.args.result or []]
    if not results:
        raise UsageError("no results: give --file or --result TOOL_USE_ID TEXT")
    answer = ctx.client().sessions.tool_results(ctx.args.session_id, results)
    ctx.out.done(f"sent {len(results)} tool result(s) to session {ctx.args.session_id}",
                 answer)
