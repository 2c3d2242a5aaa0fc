"""The operator's commands: ``serve``, ``worker``, ``projections``, ``replay`` and ``bench``.
They run server code (spool/server/commands.py), imported only when one of them runs, so the
client commands and ``spool --help`` need none of it. Each sets ``handler``: the name of its
function in spool/server/commands.py."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# A string: the class is generic only to type checkers.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_operator_commands(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API (embedded Postgres/Valkey unless "
                                "SPOOL_DATABASE_URL / SPOOL_REDIS_URL are set)")
    serve.add_argument("--host", help="bind address (SPOOL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (SPOOL_PORT, default 8700; 0 = any)")
    serve.add_argument("--processes", type=int,
                       help="server processes on the one port (SPOOL_PROCESSES, default 1)")
    serve.add_argument("--data-dir", help="embedded services' data (SPOOL_DATA_DIR, ./.spool)")
    serve.add_argument("--database-url", help="external Postgres (SPOOL_DATABASE_URL)")
    serve.add_argument("--redis-url", help="external Redis (SPOOL_REDIS_URL)")
    serve.add_argument("--log-level", help="debug|info|warning|error (SPOOL_LOG_LEVEL)")
    serve.set_defaults(handler="serve")
    worker = commands.add_parser(
        "worker", help="run sessions' turns in this process; start any number, on the same "
        "Postgres and Redis as `spool serve` (or the same data dir as an embedded one)")
    worker.add_argument("--concurrency", type=int,
                        help="sessions run at once (SPOOL_WORKERS, default 8)")
    worker.add_argument("--data-dir", help="the data dir of a running embedded `spool serve` "
                        "(SPOOL_DATA_DIR, ./.spool)")
    worker.add_argument("--database-url", help="Postgres (SPOOL_DATABASE_URL)")
    worker.add_argument("--redis-url", help="Redis (SPOOL_REDIS_URL)")
    worker.add_argument("--log-level", help="debug|info|warning|error (SPOOL_LOG_LEVEL)")
    worker.set_defaults(handler="worker")
    projections = commands.add_parser(
        "projections", help="rebuild a view from the log, or verify the views against it")
    actions = projections.add_subparsers(title="actions")
    rebuild = actions.add_parser("rebuild", help="replay the log from position 0 into fresh "
                                 "tables and swap them in (the live view keeps serving)")
    rebuild.add_argument("name", help="session_runs | approvals | tasks | agents | budgets")
    verify = actions.add_parser("verify", help="rebuild into shadow tables and print every row "
                                "that differs from the live view (exit 1 if any)")
    verify.add_argument("name", nargs="?", help="one projection (default: all)")
    for action, handler in ((rebuild, "projections_rebuild"), (verify, "projections_verify")):
        action.add_argument("--data-dir", help="the data dir of a running embedded `spool "
                            "serve` (SPOOL_DATA_DIR, ./.spool)")
        action.add_argument("--database-url", help="Postgres (SPOOL_DATABASE_URL)")
        action.set_defaults(handler=handler)
    replay = commands.add_parser(
        "replay", help="print a session's timeline from the log, its state at an event, or "
        "follow it live (an operator tool: reads Postgres directly, needs no API key or tenant)",
        description="Print a session's timeline from the log: turns, messages (their deltas "
        "joined), tool calls and results, approvals, interrupts, usage and spend per model "
        "call, and the time between events. An operator tool: it reads Postgres directly "
        "(SPOOL_DATABASE_URL, or a running embedded `spool serve`'s data dir), so it needs "
        "no API key and no tenant. Exit 1 if the session does not exist.")
    replay.add_argument("session", help="the session id (ses_...)")
    replay.add_argument("--at", type=int, metavar="SEQ",
                        help="print the session's state as of this event instead (what "
                        "GET /v1/sessions/{id}/state?at=SEQ returns)")
    replay.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new events as they are appended, until Ctrl-C")
    replay.add_argument("--rerun", action="store_true",
                        help="re-run the session's turns against a scratch copy, the model fed "
                        "the recorded outputs and server tools the recorded results (nothing "
                        "is written, no tool runs), and report the first event that differs "
                        "(exit 1) or how many match")
    replay.add_argument("--json", action="store_true",
                        help="one JSON object per line (the state: one object)")
    replay.add_argument("--data-dir", help="the data dir of a running embedded `spool serve` "
                        "(SPOOL_DATA_DIR, ./.spool)")
    replay.add_argument("--database-url", help="Postgres (SPOOL_DATABASE_URL)")
    replay.set_defaults(handler="replay")
    _add_bench(commands)


# --- spool bench: bench/report.py of the checkout (the scripts are not in the wheel) -------------


def _add_bench(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench", help="run every benchmark scenario of the checkout (bench/report.py): "
        "bench/results/<date>-<commit>.json and the table in docs/BENCHMARKS.md")
    bench.add_argument("--quick", action="store_true", help="short runs (about 2 minutes)")
    bench.add_argument("--only", metavar="NAME,...", help="only these scenarios")
    bench.add_argument("--no-docs", action="store_true",
                       help="do not rewrite the table in docs/BENCHMARKS.md")
    bench.set_defaults(handler="bench")

