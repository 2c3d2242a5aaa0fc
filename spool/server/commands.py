"""The handlers of ``spool serve``, ``worker``, ``projections``, ``replay`` and ``bench``
(spool/cli/ parses the arguments). Engine modules are imported inside each, so one command
loads only what it uses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine is imported inside each command, when it runs
    import asyncpg
    import uvicorn

    from engine.engine import Engine
    from engine.settings import Settings


def bench(args: argparse.Namespace) -> int:
    """``spool bench``: bench/report.py of the checkout (the scripts are not in the wheel)."""
    import subprocess
    from pathlib import Path

    report = Path(__file__).resolve().parents[2] / "bench" / "report.py"
    if not report.is_file():
        print(f"spool bench: no {report} (the benchmarks live in a checkout of the repository, "
              "not in the installed package)", file=sys.stderr)
        return 2
    argv = [sys.executable, str(report), *(["--quick"] if args.quick else []),
            *(["--only", args.only] if args.only else []),
            *(["--no-docs"] if args.no_docs else [])]
    return subprocess.run(argv, cwd=report.parent.parent).returncode


def replay(args: argparse.Namespace) -> int:
    from spool.server.replay import replay as replay_session

    if sum([args.at is not None, args.follow, args.rerun]) > 1:
        print("spool: --at, --follow and --rerun do not go together", file=sys.stderr)
        return 2
    url = _database_url(args)
    if url is None:
        return 2
    return asyncio.run(_with_pool_errors(replay_session(url, args.session, at=args.at,
                                                follow=args.follow, as_json=args.json,
                                                rerun=args.rerun)))


async def _with_pool_errors(work: Awaitable[int]) -> int:
    from engine.errors import SpoolError

    try:
        result: int = await work
        return result
    except SpoolError as exc:
        print(f"spool: {exc}", file=sys.stderr)
        return 2


def serve(args: argparse.Namespace) -> int:
    settings = _settings(host=args.host, port=args.port, processes=args.processes,
                         database_url=args.database_url, redis_url=args.redis_url,
                         log_level=args.log_level, data_dir=args.data_dir)
    if settings is None:
        return 2
    if settings.processes > 1:
        from spool.server.processes import serve_processes

        return serve_processes(settings)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_server(settings))


def worker(args: argparse.Namespace) -> int:
    from engine.infra.embedded import published_services

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
    from engine.infra.embedded import published_services

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


def projections_rebuild(args: argparse.Namespace) -> int:
    url = _database_url(args)
    return 2 if url is None else _run_fast(_with_pool(url, _rebuild, args.name))


def projections_verify(args: argparse.Namespace) -> int:
    url = _database_url(args)
    return 2 if url is None else _run_fast(_with_pool(url, _verify, args.name))


def _run_fast(main: Coroutine[Any, Any, int]) -> int:
    """A rebuild is one statement after another: on uvloop (when installed) each costs the
    client about a quarter less CPU (bench/projections.py)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result: int = runner.run(main)
        return result


async def _with_pool(url: str, action: Callable[[asyncpg.Pool, Any], Awaitable[int]],
                     name: str | None) -> int:
    from engine.errors import SpoolError
    from engine.infra.db import apply_schema, create_pool

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


def _progress(what: str) -> Callable[[int, int], None]:
    def report(reached: int, until: int) -> None:
        print(f"{what}: position {reached:,} of {until:,}", file=sys.stderr, flush=True)

    return report


async def _rebuild(pool: asyncpg.Pool, name: str) -> int:
    from engine.projections.checks import rebuild

    position = await rebuild(pool, name, _progress(f"rebuilding {name}"))
    print(f"{name}: rebuilt from position 0 to {position:,} and swapped in")
    return 0


async def _verify(pool: asyncpg.Pool, name: str | None) -> int:
    from engine.projections.checks import verify
    from engine.projections.views import VIEWS

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


def _settings(**flags: Any) -> Settings | None:
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


def _replace(settings: Settings, **changes: Any) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


async def _run_worker(settings: Settings) -> int:
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


def print_ready(url: str, admin_token: str | None) -> None:
    """The lines that say `spool serve` serves (what scripts and the tests wait for), each
    printed on its own (so written whole: see ``processes._whole_lines``)."""
    print(f"agentspool listening on {url}", flush=True)
    print(f"console: {url}/", flush=True)  # the web console (api/static/console/)
    if admin_token:
        print(f"admin token (shown once, stored hashed): {admin_token}", flush=True)


async def run_server(settings: Settings, sockets: list[socket.socket] | None = None,
                     ready: Callable[[str, str | None], None] = print_ready) -> int:
    """Serve until a signal: on ``settings.host:port``, or on ``sockets`` already listening
    (a process of ``spool serve --processes N``); ``ready(url, generated admin token)`` once
    it serves."""
    from api.app import create_app
    from api.server import server_config
    from engine.engine import Engine
    from engine.errors import SpoolError
    from spool.server.shutdown import Stopping

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
        announce = asyncio.create_task(_announce(server, engine, ready))
        await server.serve(sockets)
        announce.cancel()
    finally:
        await engine.__aexit__(None, None, None)
    stopping.done()
    return 0


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        stopping: Any = None  # spool.server.shutdown.Stopping

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


async def _announce(server: uvicorn.Server, engine: Engine,
                    ready: Callable[[str, str | None], None]) -> None:
    """Say where to reach the server once it listens (the port may have been 0)."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only this flag
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    ready(f"http://{host}:{port}", engine.generated_admin_token)
