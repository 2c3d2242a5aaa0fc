"""``spool tasks``: a board's tasks, their status, assignee, dependencies and comments."""

from __future__ import annotations

import argparse
from typing import Any

from spool.cli.context import Commands, Context, UsageError, action, add_limit, group
from spool.cli.output import columns

COLUMNS = columns("id", "title", "status", "priority", ("ASSIGNEE", "assignee_id"),
                  ("DEPENDS_ON", "dependencies"), ("BOARD", "board_id"))
COMMENT_COLUMNS = columns("id", "author", "body", "created_at")
STATUSES = ("inbox", "in_progress", "review", "done", "blocked")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "tasks", "tasks: list, create, show, update, delete, comment, "
                    "comments")
    listing = action(actions, "list", "list tasks", list_)
    listing.add_argument("--board", dest="board_id")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--assignee", dest="assignee_id", metavar="AGENT")
    add_limit(listing)
    create_ = action(actions, "create", "create a task on a board", create)
    create_.add_argument("title")
    create_.add_argument("--board", dest="board_id", required=True)
    _fields(create_)
    action(actions, "show", "show a task", show).add_argument("task_id", metavar="TASK")
    update_ = action(actions, "update", "change a task (move it: --status)", update)
    update_.add_argument("task_id", metavar="TASK")
    update_.add_argument("--title")
    update_.add_argument("--board", dest="board_id", help="move it to this board")
    _fields(update_)
    action(actions, "delete", "delete a task", delete).add_argument("task_id", metavar="TASK")
    comment_ = action(actions, "comment", "comment on a task", comment)
    comment_.add_argument("task_id", metavar="TASK")
    comment_.add_argument("body")
    comments_ = action(actions, "comments", "a task's comments", comments)
    comments_.add_argument("task_id", metavar="TASK")
    add_limit(comments_)


def _fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--priority", choices=("low", "normal", "high", "urgent"))
    parser.add_argument("--assignee", dest="assignee_id", metavar="AGENT")
    parser.add_argument("--due", dest="due_at", metavar="RFC3339")
    parser.add_argument("--depends-on", dest="dependencies", action="append", metavar="TASK",
                        help="a task this one waits for (repeat for more)")


def fields_of(args: argparse.Namespace) -> dict[str, Any]:
    names = ("title", "board_id", "description", "status", "priority", "assignee_id", "due_at",
             "dependencies")
    return {name: value for name in names if (value := getattr(args, name, None)) is not None}


def list_(ctx: Context) -> None:
    filters = {key: value for key in ("board_id", "status", "assignee_id")
               if (value := getattr(ctx.args, key))}
    ctx.out.table(ctx.page(ctx.client().tasks.list(**filters)), COLUMNS)


def create(ctx: Context) -> None:
    ctx.out.record(ctx.client().tasks.create(**fields_of(ctx.args)))


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().tasks.get(ctx.args.task_id))


def update(ctx: Context) -> None:
    fields = fields_of(ctx.args)
    if not fields:
        raise UsageError("nothing to change: give a field's flag (--status, --title, ...)")
    task = ctx.client().tasks.update(ctx.args.task_id, **fields)
    ctx.out.done(f"updated task {ctx.args.task_id}", task)


def delete(ctx: Context) -> None:
    answer = ctx.client().tasks.delete(ctx.args.task_id)
    ctx.out.done(f"deleted task {ctx.args.task_id}", answer)


def comment(ctx: Context) -> None:
    ctx.out.record(ctx.client().tasks.comments.create(ctx.args.task_id, body=ctx.args.body))


def comments(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().tasks.comments.list(ctx.args.task_id)),
                  COMMENT_COLUMNS)
