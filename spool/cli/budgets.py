"""``spool budgets`` and ``spool usage``' neighbour: limits per scope (``tenant``,
``agent:<id>``, ``session:<id>``) in tokens and USD, per period (total, month, day)."""

from __future__ import annotations

from typing import Any

from spool.cli.context import Commands, Context, UsageError, action, add_limit, group, read_json
from spool.cli.output import Column, columns

PERIODS = ("total", "month", "day")
SCOPE_HELP = "tenant, agent:<agent id> or session:<session id>"


def period(status: Any) -> str:
    """A period's spend against its limits: ``120/1000 tokens, $0.01/$5.00``."""
    if not isinstance(status, dict):
        return ""
    parts = []
    if status.get("tokens") is not None:
        parts.append(f"{status.get('spent_tokens', 0)}/{status['tokens']} tokens")
    if status.get("usd") is not None:
        parts.append(f"${status.get('spent_usd', 0):.4f}/${status['usd']:.2f}")
    return ", ".join(parts) + (" EXCEEDED" if status.get("exceeded") else "")


COLUMNS = columns("scope", *(Column(name.upper(), f"limits.{name}", period) for name in PERIODS),
                  "updated_at")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "budgets", "budgets: list, show, set, delete")
    add_limit(action(actions, "list", "list the budgets and what is spent", list_))
    action(actions, "show", "show a scope's budget", show).add_argument(
        "scope", metavar="SCOPE", help=SCOPE_HELP)
    setting = action(actions, "set", "set a scope's limits (whole: periods not given are "
                     "dropped)", set_, "Set a scope's limits, whole: --tokens and --usd for "
                     "one --period, or --file with {\"total\"|\"month\"|\"day\": {\"tokens\", "
                     "\"usd\"}}.")
    setting.add_argument("scope", metavar="SCOPE", help=SCOPE_HELP)
    setting.add_argument("--period", choices=PERIODS, default="total")
    setting.add_argument("--tokens", type=int)
    setting.add_argument("--usd", type=float)
    setting.add_argument("-f", "--file", help="the limits as JSON (\"-\": stdin)")
    action(actions, "delete", "remove a scope's budget", delete).add_argument(
        "scope", metavar="SCOPE", help=SCOPE_HELP)


def list_(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().budgets.list()), COLUMNS)


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().budgets.get(ctx.args.scope))


def limits_of(ctx: Context) -> dict[str, Any]:
    limits = read_json(ctx.args.file) if ctx.args.file else {}
    if not isinstance(limits, dict) or set(limits) - set(PERIODS):
        raise UsageError("--file: the limits must be a JSON object of total, month and day")
    given = {key: value for key in ("tokens", "usd")
             if (value := getattr(ctx.args, key)) is not None}
    if given:
        limits[ctx.args.period] = given
    if not limits:
        raise UsageError("no limits: give --tokens and/or --usd, or --file")
    return limits


def set_(ctx: Context) -> None:
    budget = ctx.client().budgets.set(ctx.args.scope, **limits_of(ctx))
    ctx.out.done(f"set the budget of {ctx.args.scope}", budget)


def delete(ctx: Context) -> None:
    answer = ctx.client().budgets.delete(ctx.args.scope)
    ctx.out.done(f"removed the budget of {ctx.args.scope}", answer)
