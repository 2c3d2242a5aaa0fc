"""The ``spool`` command: the operator's commands (spool/cli/operator.py, which run server code
imported only when they run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spool.cli.operator import add_operator_commands

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    # Imported only now: `spool --help` and the client commands need no server code.
    from spool.server import commands

    result: int = getattr(commands, args.handler)(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spool", description="agentspool: agent sessions as event logs in Postgres, "
        "fanned out through Redis.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_operator_commands(commands)
    return parser

