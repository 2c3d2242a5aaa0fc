"""``spool approvals``: tool calls that wait for a human's decision."""

from __future__ import annotations

from typing import Literal

from spool.cli.context import Commands, Context, Run, action, add_limit, group
from spool.cli.output import columns

COLUMNS = columns("id", "status", ("SESSION", "session_id"), ("TOOL", "tool_name"), "input",
                  "requested_at")

Decision = Literal["approve", "deny"]
DECISIONS: tuple[Decision, ...] = ("approve", "deny")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "approvals", "approvals: list, show, approve, deny")
    listing = action(actions, "list", "list approvals (the pending ones unless --status)", list_)
    listing.add_argument("--status", choices=("pending", "approved", "denied", "cancelled",
                                              "all"), default="pending")
    listing.add_argument("--session", dest="session_id", metavar="SESSION")
    add_limit(listing)
    action(actions, "show", "show an approval", show).add_argument("approval_id",
                                                                   metavar="APPROVAL")
    for decision in DECISIONS:
        decide = action(actions, decision, f"{decision} the tool call (the turn goes on)",
                        _resolve(decision))
        decide.add_argument("approval_id", metavar="APPROVAL")
        decide.add_argument("--reason", help="said to the model with the decision")


def list_(ctx: Context) -> None:
    filters = {"status": ctx.args.status} if ctx.args.status != "all" else {}
    if ctx.args.session_id:
        filters["session_id"] = ctx.args.session_id
    ctx.out.table(ctx.page(ctx.client().approvals.list(**filters)), COLUMNS)


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().approvals.get(ctx.args.approval_id))


def _resolve(decision: Decision) -> Run:
    def run(ctx: Context) -> None:
        fields = {"reason": ctx.args.reason} if ctx.args.reason else {}
        answer = ctx.client().approvals.resolve(ctx.args.approval_id, decision=decision,
                                                **fields)
        done = "approved" if decision == "approve" else "denied"
        ctx.out.done(f"{done} {ctx.args.approval_id}", answer)
    return run
