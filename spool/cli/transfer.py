"""``spool export`` and ``spool import``: a session (or the whole tenant) as JSON Lines, the
format of ``GET /v1/sessions/{id}/export`` and ``GET /v1/export``: a header object first, then
one event per line. ``import`` sends such a file back (``POST /v1/sessions/import``), as it
reads it, with a progress bar on stderr when that is a terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from spool.cli.context import Commands, Context, UsageError, global_options
from spool.cli.output import columns, plain

RESULT_COLUMNS = columns("from", "id", "events", "written")


def add_commands(commands: Commands) -> None:
    export = commands.add_parser(
        "export", parents=[global_options()], help="write a session (or --tenant: every "
        "session) as JSON Lines to stdout", description="Write a session's log (or with "
        "--tenant the whole tenant's) to stdout as JSON Lines, as the server streams it: "
        "`spool export SESSION > s.jsonl`. `spool import` reads it back.")
    export.add_argument("session_id", metavar="SESSION", nargs="?")
    export.add_argument("--tenant", action="store_true", help="the whole tenant")
    export.set_defaults(run=export_)
    import_ = commands.add_parser(
        "import", parents=[global_options()], help="create sessions from an export (a JSON "
        "Lines file, or - for stdin)", description="Send an export back to the server, which "
        "creates its sessions anew (new ids) and answers what it made of each.")
    import_.add_argument("file", help='the export (JSON Lines; "-": stdin)')
    import_.set_defaults(run=import_run)


# --- export --------------------------------------------------------------------------------


def export_(ctx: Context) -> None:
    if ctx.args.tenant == bool(ctx.args.session_id):
        raise UsageError("give a SESSION, or --tenant for every session of the tenant")
    client = ctx.client()
    lines = (client.events.export() if ctx.args.tenant
             else client.sessions.export(ctx.args.session_id))
    written = 0
    with _progress(None) as progress:
        task = progress.add_task("exporting", total=None)
        for line in lines:
            sys.stdout.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
            written += 1
            progress.update(task, advance=1, description=f"exported {written} lines")
    sys.stdout.flush()


# --- import --------------------------------------------------------------------------------


def import_run(ctx: Context) -> None:
    source, size = _open(ctx.args.file)
    with source, _progress(size) as progress:
        task = progress.add_task("importing", total=size)
        answer = ctx.client().sessions.import_(_lines(source, ctx.args.file, progress, task))
    found = plain(answer)
    if ctx.out.json:
        ctx.out.document(found)
        return
    ctx.out.table(found.get("sessions", []) if isinstance(found, dict) else found,
                  RESULT_COLUMNS)


def _open(path: str) -> tuple[IO[bytes], int | None]:
    if path == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb"), None
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed by the caller's with
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    size = os.fstat(source.fileno()).st_size
    return source, size or None


def _lines(source: IO[bytes], path: str, progress: Progress,
           task: Any) -> Iterator[dict[str, Any]]:
    """The file's objects one by one as the upload reads them, the bar advanced by their
    bytes; a line that is not a JSON object stops it, naming the line."""
    for number, raw in enumerate(source, start=1):
        progress.update(task, advance=len(raw))
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object")
        yield value


def _progress(total: int | None) -> Progress:
    """A bar on stderr (bytes when the size is known, else a count), only on a terminal."""
    console = Console(stderr=True)
    parts: Iterable[Any] = (
        (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
         TimeRemainingColumn()) if total else (SpinnerColumn(), TextColumn("{task.description}")))
    return Progress(*parts, console=console, transient=False,
                    disable=not console.is_terminal)
