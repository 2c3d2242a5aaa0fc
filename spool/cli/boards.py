"""``spool boards``: task boards (``spool tasks`` holds their tasks)."""

from __future__ import annotations

from spool.cli.context import Commands, Context, UsageError, action, add_limit, group
from spool.cli.output import columns, plain
from spool.cli.tasks import COLUMNS as TASK_COLUMNS

COLUMNS = columns("id", "name", "description", "updated_at")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "boards", "task boards: list, create, show, update, delete, "
                    "snapshot")
    add_limit(action(actions, "list", "list the boards", list_))
    create_ = action(actions, "create", "create a board", create)
    create_.add_argument("name")
    create_.add_argument("--description")
    action(actions, "show", "show a board", show).add_argument("board_id", metavar="BOARD")
    update_ = action(actions, "update", "rename a board or change its description", update)
    update_.add_argument("board_id", metavar="BOARD")
    update_.add_argument("--name")
    update_.add_argument("--description")
    action(actions, "delete", "delete a board and its tasks",
           delete).add_argument("board_id", metavar="BOARD")
    action(actions, "snapshot", "the board's tasks by status, counts and what is blocked",
           snapshot).add_argument("board_id", metavar="BOARD")


def list_(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().boards.list()), COLUMNS)


def create(ctx: Context) -> None:
    fields = {"description": ctx.args.description} if ctx.args.description else {}
    ctx.out.record(ctx.client().boards.create(name=ctx.args.name, **fields))


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().boards.get(ctx.args.board_id))


def update(ctx: Context) -> None:
    fields = {key: value for key in ("name", "description")
              if (value := getattr(ctx.args, key)) is not None}
    if not fields:
        raise UsageError("nothing to change: give --name or --description")
    board = ctx.client().boards.update(ctx.args.board_id, **fields)
    ctx.out.done(f"updated board {ctx.args.board_id}", board)


def delete(ctx: Context) -> None:
    answer = ctx.client().boards.delete(ctx.args.board_id)
    ctx.out.done(f"deleted board {ctx.args.board_id}", answer)


def snapshot(ctx: Context) -> None:
    found = plain(ctx.client().boards.snapshot(ctx.args.board_id))
    if ctx.out.json:
        ctx.out.document(found)
        return
    board = found.get("board") or {}
    ctx.out.line(f"{board.get('name')} ({board.get('id')}) at position {found.get('position')}",
                 style="bold")
    counts = found.get("counts") or {}
    ctx.out.line("  ".join(f"{status} {count}" for status, count in counts.items()))
    by_status = (found.get("tasks") or {}).values()
    ctx.out.table([task for tasks in by_status for task in tasks], TASK_COLUMNS)
