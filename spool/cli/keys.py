"""``spool keys``: the tenant's API keys. A new key's secret is printed once, as the server
shows it once."""

from __future__ import annotations

from spool.cli.context import Commands, Context, action, add_limit, group
from spool.cli.output import columns

COLUMNS = columns("id", "name", "role", "created_at", "revoked_at")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "keys", "API keys: list, create, revoke")
    add_limit(action(actions, "list", "list the tenant's API keys", list_))
    create_ = action(actions, "create", "create an API key (its secret is shown only now)",
                     create)
    create_.add_argument("name")
    create_.add_argument("--role", choices=("owner", "member", "viewer"), default="member",
                         help="default member")
    action(actions, "revoke", "revoke an API key (the streams it opened close)",
           revoke).add_argument("key_id", metavar="KEY")


def list_(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().api_keys.list()), COLUMNS)


def create(ctx: Context) -> None:
    key = ctx.client().api_keys.create(name=ctx.args.name, role=ctx.args.role)
    ctx.out.record(key)
    if not ctx.out.json:
        ctx.out.note("the key is shown only this once: store it now")


def revoke(ctx: Context) -> None:
    key = ctx.client().api_keys.revoke(ctx.args.key_id)
    ctx.out.done(f"revoked key {ctx.args.key_id}", key)
