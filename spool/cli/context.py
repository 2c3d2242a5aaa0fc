"""What every client command shares: the connection and output options, the client it talks
through, how a group of actions is declared, and how an error becomes an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from spool.cli.config import ConfigError, Resolved, resolve
from spool.cli.output import Output

if TYPE_CHECKING:
    import spool

# A string: the class is generic only to type checkers.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run = Callable[["Context"], int | None]
T = TypeVar("T")

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """The command line (or a file it names) is wrong: exit 2, as argparse's own errors."""


def global_options() -> argparse.ArgumentParser:
    """The options every client command takes, before or after its name (``spool --json
    agents list`` or ``spool agents list --json``). SUPPRESS: an option not given on the action
    does not hide the same option given before it."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection and output")
    group.add_argument("--profile", default=argparse.SUPPRESS,
                       help="the config file's profile to use (SPOOL_PROFILE)")
    group.add_argument("--base-url", default=argparse.SUPPRESS,
                       help="the server (SPOOL_BASE_URL, default http://127.0.0.1:8700)")
    group.add_argument("--api-key", default=argparse.SUPPRESS,
                       help="the API key, or the admin token (SPOOL_API_KEY)")
    group.add_argument("--tenant-id", default=argparse.SUPPRESS,
                       help="the tenant the admin token acts on (SPOOL_TENANT_ID)")
    group.add_argument("-o", "--output", choices=("table", "json", "id"),
                       default=argparse.SUPPRESS, help="table (the default), json, or id: "
                       "only the id of each thing shown, a line each (for scripts)")
    group.add_argument("--json", dest="output", action="store_const", const="json",
                       default=argparse.SUPPRESS, help="the same as -o json")
    return parser


def group(commands: Commands, name: str, help: str) -> Commands:
    """``spool NAME ACTION ...``; ``spool NAME`` alone prints the actions (exit 2)."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(run=_print_help(parser))
    return parser.add_subparsers(title="actions", metavar="ACTION")


def action(actions: Commands, name: str, help: str, run: Run,
           description: str | None = None) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help, description=description or help,
                                parents=[global_options()])
    parser.set_defaults(run=run)
    return parser


def add_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_positive, default=50,
                        help="show at most this many (default 50)")
    parser.add_argument("--all", action="store_true", help="show every one (pages through)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _print_help(parser: argparse.ArgumentParser) -> Run:
    def run(ctx: Context) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run


class Context:
    """One command's parsed arguments, its output, and (made on first use) its client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(getattr(args, "output", "table"))
        self._client: spool.Client | None = None

    @cached_property
    def settings(self) -> Resolved:
        flags = {key: getattr(self.args, key, None)
                 for key in ("profile", "base_url", "api_key", "tenant_id")}
        return resolve(flags)

    def client(self) -> spool.Client:
        if self._client is None:
            import spool

            settings = self.settings
            if not settings.api_key:
                raise UsageError(f"no API key for profile {settings.profile!r}: run `spool "
                                 "init`, pass --api-key or set SPOOL_API_KEY")
            self._client = spool.Client(base_url=settings.base_url, api_key=settings.api_key,
                                        tenant=settings.tenant_id)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def page(self, items: Iterable[T]) -> Iterator[T]:
        """A self-paging list cut at ``--limit`` unless ``--all``."""
        if getattr(self.args, "all", False):
            return iter(items)
        return islice(items, self.args.limit)


def run_client_command(args: argparse.Namespace) -> int:
    """Run ``args.run`` and turn what went wrong into a message on stderr and an exit code."""
    from spool import SpoolError

    ctx = Context(args)
    try:
        return args.run(ctx) or EXIT_OK
    except (UsageError, ConfigError) as exc:
        ctx.out.error(str(exc))
        return EXIT_USAGE
    except SpoolError as exc:
        ctx.out.error(describe(exc))
        return EXIT_API
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `spool ... | head`: the reader is gone, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        ctx.close()


def describe(exc: Any) -> str:
    """An SDK error in one line: the server's message, then its type, status and request id
    (what an operator asks for), then the details that name the bad field."""
    where = [exc.type]
    if exc.status is not None:
        where.append(f"HTTP {exc.status}")
    if exc.request_id:
        where.append(f"request {exc.request_id}")
    text = f"{exc.message} ({', '.join(where)})"
    if exc.details:
        text += f"\n  details: {json.dumps(exc.details, ensure_ascii=False)}"
    cause = exc.__cause__
    if exc.status is None and cause is not None and str(cause) not in exc.message:
        text += f"\n  cause: {cause}"
    return text


def read_json(path: str, what: str = "--file") -> Any:
    """The JSON in file ``path`` ("-": stdin), or a usage error naming it."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what}: {path} is not JSON: {exc}") from exc


def json_value(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what}: not JSON: {exc}") from exc


def pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE options as a dict (VALUE as JSON when it parses, else the string)."""
    found: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found
