"""``spool tenants``: the admin's commands (the API key is the admin token)."""

from __future__ import annotations

from spool.cli.context import Commands, Context, action, add_limit, group
from spool.cli.output import columns

COLUMNS = columns("id", "name", "status", "created_at")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "tenants", "tenants (admin token): list, create, show, suspend, "
                    "resume")
    add_limit(action(actions, "list", "list the tenants", list_))
    action(actions, "create", "create a tenant", create).add_argument("name")
    for name, run, help in (("show", show, "show a tenant"),
                            ("suspend", suspend, "suspend a tenant: its running turns end, its "
                             "streams close, its keys are refused"),
                            ("resume", resume, "resume a suspended tenant")):
        action(actions, name, help, run).add_argument("tenant_id", metavar="TENANT")


def list_(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().tenants.list()), COLUMNS)


def create(ctx: Context) -> None:
    ctx.out.record(ctx.client().tenants.create(name=ctx.args.name))


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().tenants.get(ctx.args.tenant_id))


def suspend(ctx: Context) -> None:
    tenant = ctx.client().tenants.suspend(ctx.args.tenant_id)
    ctx.out.done(f"suspended tenant {ctx.args.tenant_id}", tenant)


def resume(ctx: Context) -> None:
    tenant = ctx.client().tenants.resume(ctx.args.tenant_id)
    ctx.out.done(f"resumed tenant {ctx.args.tenant_id}", tenant)
