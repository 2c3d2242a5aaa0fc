"""``spool usage``: what was spent, grouped by agent, session, model or day."""

from __future__ import annotations

from spool.cli.context import Commands, Context, action, add_limit, group
from spool.cli.output import Column, columns, usd

COLUMNS = columns("key", "calls", ("INPUT", "input_tokens"), ("OUTPUT", "output_tokens"),
                  ("CACHE_READ", "cache_read_tokens"), ("CACHE_WRITE", "cache_write_tokens"),
                  "tokens", Column("USD", "usd", usd))


def add_commands(commands: Commands) -> None:
    actions = group(commands, "usage", "usage: list (spend grouped by agent, session, model "
                    "or day)")
    listing = action(actions, "list", "spend grouped by --group-by", list_)
    listing.add_argument("--group-by", choices=("agent", "session", "model", "day"),
                         default="agent")
    listing.add_argument("--from", dest="from_", metavar="RFC3339", help="from this time")
    listing.add_argument("--to", metavar="RFC3339", help="until this time")
    listing.add_argument("--agent", dest="agent_id", metavar="AGENT")
    listing.add_argument("--session", dest="session_id", metavar="SESSION")
    add_limit(listing)


def list_(ctx: Context) -> None:
    filters = {key: value for key in ("from_", "to", "agent_id", "session_id")
               if (value := getattr(ctx.args, key))}
    rows = ctx.client().usage.get(group_by=ctx.args.group_by, **filters)
    ctx.out.table(ctx.page(rows), COLUMNS)
