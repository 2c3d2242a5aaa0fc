"""The ``spool`` command: the client commands (a module per resource group, on the SDK) and the
operator's commands (spool/cli/operator.py, which run server code imported only when they run).

Exit codes, as gh and kubectl have them: 0 done, 1 the API (or the connection) failed, with the
server's message and request id on stderr, 2 a usage error (argparse's own, or ours).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from spool.cli import (
    agents,
    approvals,
    boards,
    budgets,
    follow,
    init,
    keys,
    sessions,
    tasks,
    tenants,
    transfer,
    usage,
)
from spool.cli.context import global_options, run_client_command
from spool.cli.operator import add_operator_commands

__all__ = ["main"]

# The client command groups in the order `spool --help` lists them.
_GROUPS = (init, tenants, keys, agents, sessions, follow, boards, tasks, approvals, budgets,
           usage, transfer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "run"):
        # Ctrl-C ends a client command (`tail`, `send --follow`) even when it was started with
        # SIGINT ignored, as a shell's background job is: Python then never installs its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_client_command(args)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    # Imported only now: `spool --help` and the client commands need no server code.
    from spool.server import commands

    result: int = getattr(commands, args.handler)(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spool", parents=[global_options()],
        description="agentspool: agent sessions as event logs in Postgres, fanned out through "
        "Redis. The client commands talk to a server over its HTTP API (the profile in "
        "~/.config/spool/config.toml, or SPOOL_BASE_URL and SPOOL_API_KEY); serve, worker, "
        "projections, replay and bench are the operator's.")
    parser.add_argument("--version", action="version", version=f"spool {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in _GROUPS:
        group.add_commands(commands)
    add_operator_commands(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentspool")
    except PackageNotFoundError:  # a checkout on the path without an install
        return "0+unknown"
