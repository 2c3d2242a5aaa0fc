"""The ``spool`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    result: int = args.handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spool", description="agentspool: agent sessions "
                                     "as event logs in Postgres, fanned out through Redis.")
    commands = parser.add_subparsers(title="commands")
    serve = commands.add_parser("serve", help="run the HTTP API (embedded Postgres/Valkey unless "
                                "SPOOL_DATABASE_URL / SPOOL_REDIS_URL are set)")
    serve.add_argument("--host", help="bind address (SPOOL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (SPOOL_PORT, default 8700; 0 = any)")
    serve.add_argument("--data-dir", help="embedded services' data (SPOOL_DATA_DIR, ./.spool)")
    serve.add_argument("--database-url", help="external Postgres (SPOOL_DATABASE_URL)")
    serve.add_argument("--redis-url", help="external Redis (SPOOL_REDIS_URL)")
    serve.add_argument("--log-level", help="debug|info|warning|error (SPOOL_LOG_LEVEL)")
    serve.set_defaults(handler=_serve)
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
    worker.set_defaults(handler=_worker)
    projections = commands.add_parser(
        "projections", help="rebuild a view from the log, or verify the views against it")
    actions = projections.add_subparsers(title="actions")
    rebuild = actions.add_parser("rebuild", help="replay the log from position 0 into fresh "
                                 "tables and swap them in (the live view keeps serving)")
    rebuild.add_argument("name", help="session_runs | approvals | tasks | agents | budgets")
    verify = actions.add_parser("verify", help="rebuild into shadow tables and print every row "
                                "that differs from the live view (exit 1 if any)")
    verify.add_argument("name", nargs="?", help="one projection (default: all)")
    for action, handler in ((rebuild, _projections_rebuild), (verify, _projections_verify)):
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
    replay.set_defaults(handler=_replay)
    return parser


def _replay(args: argparse.Namespace) -> int:
    from spool.replay import replay

    if sum([args.at is not None, args.follow, args.rerun]) > 1:
        print("spool: --at, --follow and --rerun do not go together", file=sys.stderr)
        return 2
    url = _database_url(args)
    if url is None:
        return 2
    return asyncio.run(_with_pool_errors(replay(url, args.session, at=args.at,
                                                follow=args.follow, as_json=args.json,
                                                rerun=args.rerun)))


async def _with_pool_errors(work: Any) -> int:
    from engine.errors import SpoolError

    try:
        result: int = await work
        return result
    except SpoolError as exc:
        print(f"spool: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(host=args.host, port=args.port, database_url=args.database_url,
                         redis_url=args.redis_url, log_level=args.log_level,
                         data_dir=args.data_dir)
    if settings is None:
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run_server(settings))


def _worker(args: argparse.Namespace) -> int:
    from engine.embedded import published_services

    settings = _settings(workers=args.concurrency, database_url=args.database_url,
                         redis_url=args.redis_url, log_level=args.log_level,
                         data_dir=args.data_dir)
    if settings is None:
        return 2
    if settings.database_url is None or settings.redis_url is None:
        found = published_services(settings.data_dir)
        if found is None:
            print(f"spool: no running `spool serve` publishes its services in "
                  f"{settings.data_dir}; start one there, or set SPOOL_DATABASE_URL and "
                  "SPOOL_REDIS_URL", file=sys.stderr)
            return 2
        settings = _replace(settings, database_url=settings.database_url or found[0],
                            redis_url=settings.redis_url or found[1])
    if settings.workers < 1:
        print("spool: a worker needs --concurrency (SPOOL_WORKERS) of at least 1",
              file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run_worker(settings))


def _database_url(args: argparse.Namespace) -> str | None:
    """SPOOL_DATABASE_URL / --database-url, or what a running embedded `spool serve` published
    in the data dir; None (after saying why) if neither."""
    from engine.embedded import published_services

    settings = _settings(database_url=args.database_url, data_dir=args.data_dir)
    if settings is None:
        return None
    if settings.database_url:
        return str(settings.database_url)
    found = published_services(settings.data_dir)
    if found is None or found[0] is None:
        print(f"spool: no running `spool serve` publishes its services in {settings.data_dir}; "
              "start one there, or set SPOOL_DATABASE_URL", file=sys.stderr)
        return None
    return found[0]


def _projections_rebuild(args: argparse.Namespace) -> int:
    url = _database_url(args)
    return 2 if url is None else _run_fast(_with_pool(url, _rebuild, args.name))


def _projections_verify(args: argparse.Namespace) -> int:
    url = _database_url(args)
    return 2 if url is None else _run_fast(_with_pool(url, _verify, args.name))


def _run_fast(main: Any) -> int:
    """A rebuild is one statement after another: on uvloop (when installed) each costs the
    client about a quarter less CPU (bench/projections.py)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result: int = runner.run(main)
        return result


async def _with_pool(url: str, action: Any, name: str | None) -> int:
    from engine.db import apply_schema, create_pool
    from engine.errors import SpoolError

    try:
        pool = await create_pool(url, size=2)
        try:
            await apply_schema(pool)
            result: int = await action(pool, name)
            return result
        finally:
            await pool.close()
    except SpoolError as exc:
        print(f"spool: {exc}", file=sys.stderr)
        return 2


def _progress(what: str) -> Any:
    def report(reached: int, until: int) -> None:
        print(f"{what}: position {reached:,} of {until:,}", file=sys.stderr, flush=True)

    return report


async def _rebuild(pool: Any, name: str) -> int:
    from engine.projections.checks import rebuild

    position = await rebuild(pool, name, _progress(f"rebuilding {name}"))
    print(f"{name}: rebuilt from position 0 to {position:,} and swapped in")
    return 0


async def _verify(pool: Any, name: str | None) -> int:
    from engine.projections.checks import VIEWS, verify

    drifted = False
    for each in [name] if name else list(VIEWS):
        drift = await verify(pool, each, _progress(f"verifying {each}"))
        if drift.clean:
            print(f"{each}: clean at position {drift.position:,}")
            continue
        drifted = True
        print(f"{each}: DRIFT at position {drift.position:,}")
        for label, rows in (("only in the live view", drift.only_live),
                            ("only in a rebuild from the log", drift.only_rebuilt)):
            for table, found in rows.items():
                for row in found:
                    print(f"  {table}, {label}: {json.dumps(row, sort_keys=True)}")
    return 1 if drifted else 0


def _settings(**flags: Any) -> Any:
    """Settings from SPOOL_* and the flags given; None (after saying why) if one is bad."""
    from pathlib import Path

    from engine.logging import configure_logging
    from engine.settings import Settings, SettingsError

    if flags.get("data_dir"):
        flags["data_dir"] = Path(flags["data_dir"])
    try:
        settings = Settings.from_env(**flags)
    except SettingsError as exc:
        print(f"spool: invalid setting {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level)
    return settings


def _replace(settings: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


async def _run_worker(settings: Any) -> int:
    from engine.engine import Engine
    from engine.errors import SpoolError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(sig: int) -> None:  # loop.add_signal_handler: runs on the loop, not in a handler
        if stop.is_set():
            os._exit(128 + sig)  # a second signal: at once (what runs is recovered from the log)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    try:
        async with Engine(settings) as engine:
            assert engine.worker is not None
            print(f"agentspool worker {engine.worker.id} running "
                  f"({settings.workers} sessions at once)", flush=True)
            await stop.wait()
            # as spool serve: running steps finish (for half the time), leases go back at once
            await engine.stop_worker(settings.shutdown_seconds / 2)
    except SpoolError as exc:
        print(f"spool: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _loop_factory() -> Any:
    """uvloop when installed (uvicorn[standard] brings it, as uvicorn itself would use it):
    its transports write to sockets in C."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_server(settings: Any) -> int:
    from api.app import create_app
    from api.server import server_config
    from engine.engine import Engine
    from engine.errors import SpoolError
    from spool.shutdown import Stopping

    try:
        engine = await Engine(settings).__aenter__()
    except SpoolError as exc:
        print(f"spool: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        config = server_config(create_app(settings, engine), settings)
        server = _server_class()(config)
        server.stopping = stopping = Stopping(engine, engine.open_streams,
                                              settings.shutdown_seconds)
        announce = asyncio.create_task(_announce(server, engine))
        await server.serve()
        announce.cancel()
    finally:
        await engine.__aexit__(None, None, None)
    stopping.done()
    return 0


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        stopping: Any = None  # spool.shutdown.Stopping

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """uvicorn's, minus re-raising the signal after shutdown: that would kill the
            process before the engine drains and the embedded services stop."""
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.stopping is not None:
                self.stopping.signalled(sig)  # a second signal exits here, at once
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: Any = None) -> None:
            """uvicorn's, with the open SSE streams closed (they never end on their own) and
            the worker drained meanwhile, each bounded by the stopping's grace."""
            if self.stopping is None:
                await super().shutdown(sockets)
                return
            for server in self.servers:  # accept nothing new before closing the streams
                server.close()
            self.config.timeout_graceful_shutdown = self.stopping.grace
            await self.stopping.drain(super().shutdown(sockets))

    return Server


async def _announce(server: Any, engine: Any) -> None:
    """Print where to reach the server once it listens (the port may have been 0)."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only this flag
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    lines = [f"agentspool listening on http://{host}:{port}"]
    if engine.generated_admin_token:
        lines.append(f"admin token (shown once, stored hashed): {engine.generated_admin_token}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
