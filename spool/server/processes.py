"""``spool serve --processes N`` (``SPOOL_PROCESSES``): N server processes on one port.

The parent starts the embedded services (unless both URLs are set), binds the listening socket
once (port 0: any) and starts N children, each in a process group of its own. Every child is a
whole ``spool serve`` on the shared URLs (an ``Engine``: its worker, its projection runners, its
relay) that accepts on the inherited socket: the kernel hands each connection to one of them.
The parent serves nothing: it prints the start-up lines once every child serves, then waits.

- Settings reach a child on its stdin, which then stays open: its end (the parent died, even
  by SIGKILL) stops the child as a SIGTERM would. A child reports that it serves (and the
  admin token, if it generated it) on a pipe of its own.
- The first SIGTERM/SIGINT to the parent (a terminal's Ctrl-C reaches the parent only: the
  children are in groups of their own) is passed on as one SIGTERM to each child, which stops
  as a single ``spool serve`` does; then the parent stops the embedded services, all within
  ``SPOOL_SHUTDOWN_SECONDS``. A second signal, or the time running out, kills the children and
  exits at once (``shutdown.StopClock``).
- A child that exits on its own (it crashed, or could not start) is logged
  (``serve.process_exited``) and the others are stopped as on a signal; the exit is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import pickle
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

from engine.errors import SpoolError
from engine.infra.embedded import EmbeddedServices
from engine.logging import configure_logging, get_logger
from spool.server.commands import _loop_factory, _replace, print_ready, run_server
from spool.server.shutdown import StopClock

if TYPE_CHECKING:
    from engine.settings import Settings

log = get_logger("serve")

BACKLOG = 2048  # uvicorn's default


def serve_processes(settings: Settings) -> int:
    _whole_lines()
    with asyncio.Runner() as runner:
        return runner.run(_Parent(settings).run())


class _Child:
    """One server process and the pipe it reports on."""

    def __init__(self, index: int, process: asyncio.subprocess.Process,
                 status: asyncio.StreamReader) -> None:
        self.index = index
        self.process = process
        self._status = status

    @classmethod
    async def start(cls, index: int, settings: Settings, listening: socket.socket) -> _Child:
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spool.server.processes",
                "--socket-fd", str(listening.fileno()), "--status-fd", str(write_end),
                stdin=asyncio.subprocess.PIPE, pass_fds=(listening.fileno(), write_end),
                process_group=0,  # a terminal's Ctrl-C is the parent's to pass on
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        status = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(status), os.fdopen(read_end, "rb"))
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(settings))  # kept open: its end stops the child
        with contextlib.suppress(ConnectionError):  # it died at once: its status pipe tells
            await process.stdin.drain()
        return cls(index, process, status)

    async def serving(self) -> str | None:
        """Once the child serves: the admin token it generated, if it did."""
        line = await self._status.readline()
        if not line:
            raise _Exited(self)
        token: str | None = json.loads(line)["admin_token"]
        return token

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def signal(self, sig: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


class _Exited(Exception):
    def __init__(self, child: _Child) -> None:
        super().__init__(f"server process {child.index} exited")
        self.child = child


class _Parent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[_Child] = []
        self.embedded: EmbeddedServices | None = None
        self.stop = asyncio.Event()

    async def run(self) -> int:
        self.clock = StopClock(self._stop_now, self.settings.shutdown_seconds)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled, sig)
        try:
            shared = await self._start_services()
        except SpoolError as exc:
            print(f"spool: cannot start: {exc}", file=sys.stderr)
            return 1
        try:
            code = await self._serve(shared)
        finally:
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)
        self.clock.done()
        return code

    def _signalled(self, sig: int) -> None:
        self.clock.signalled(sig)  # a second signal exits here, at once
        self.stop.set()

    def _stop_now(self) -> None:
        """A forced exit (a second signal, the time ran out): no waiting, no lock."""
        for child in self.children:
            if child.running:
                with contextlib.suppress(OSError):
                    os.kill(child.process.pid, signal.SIGKILL)
        if self.embedded is not None:
            self.embedded.stop_now()

    async def _start_services(self) -> Settings:
        """The settings every child runs with: both URLs set."""
        settings = self.settings
        if settings.embedded:
            embedded = EmbeddedServices(settings.data_dir, postgres=settings.database_url is None,
                                        redis=settings.redis_url is None)
            await asyncio.to_thread(embedded.start)
            self.embedded = embedded
            settings = _replace(settings, database_url=settings.database_url
                                or embedded.database_url,
                                redis_url=settings.redis_url or embedded.redis_url)
        return _replace(settings, processes=1)

    async def _serve(self, shared: Settings) -> int:
        try:
            listening = _listen(shared.host, shared.port)
        except OSError as exc:
            print(f"spool: cannot start: cannot listen on {shared.host}:{shared.port}: {exc}",
                  file=sys.stderr)
            return 1
        with listening:  # closed once the children have it: it closes with the last of them
            host, port = listening.getsockname()[:2]
            for index in range(self.settings.processes):
                if self.stop.is_set():
                    break
                self.children.append(await _Child.start(index, shared, listening))
        log.info("serve.processes", pids=[child.process.pid for child in self.children])
        exited = await self._until_serving(f"http://{host}:{port}")
        if exited is None:
            exited = await self._until_stop_or_exit()
        if exited is not None:
            log.error("serve.process_exited", index=exited.index, pid=exited.process.pid,
                      exit_code=exited.process.returncode)
        for child in self.children:
            child.signal(signal.SIGTERM)
        codes = [await child.process.wait() for child in self.children]
        return 1 if exited is not None or any(codes) else 0

    async def _until_serving(self, url: str) -> _Child | None:
        """Until every child serves (then print the start-up lines once) or a signal; the
        child that exited before it served, if one did."""
        serving = [asyncio.ensure_future(child.serving()) for child in self.children]
        stop = asyncio.ensure_future(self.stop.wait())
        waiting: set[asyncio.Future[Any]] = {stop, *serving}
        try:
            while not self.stop.is_set() and not all(task.done() for task in serving):
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stop and isinstance(exc := task.exception(), _Exited):
                        await exc.child.process.wait()
                        return exc.child
            if not self.stop.is_set():
                print_ready(url, next((t.result() for t in serving if t.result()), None))
            return None
        finally:
            for task in (stop, *serving):
                task.cancel()

    async def _until_stop_or_exit(self) -> _Child | None:
        """Until a signal (None) or a child exits on its own (that child)."""
        waits = {asyncio.ensure_future(child.process.wait()): child for child in self.children}
        stop = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait([stop, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [stop, *waits]:
                task.cancel()
        exited = [waits[task] for task in done if task in waits]
        return None if self.stop.is_set() or not exited else exited[0]


def _whole_lines() -> None:
    """The parent and its children write to one stdout (and stderr): each line in one write,
    so that one process's line never lands inside another's. Unbuffered (PYTHONUNBUFFERED, as
    container images set it), a ``print`` writes the text and its newline apart."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(write_through=False, line_buffering=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(BACKLOG)
    except BaseException:
        listening.close()
        raise
    return listening


# --- a child -----------------------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="spool serve (a server process)")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    args = parser.parse_args(argv)
    _whole_lines()
    settings: Settings = pickle.load(sys.stdin.buffer)  # from the parent, which started us
    configure_logging(settings.log_level)
    listening = socket.socket(fileno=args.socket_fd)
    status = os.fdopen(args.status_fd, "w")

    def ready(url: str, admin_token: str | None) -> None:
        status.write(json.dumps({"url": url, "admin_token": admin_token}) + "\n")
        status.flush()

    threading.Thread(target=_stop_when_the_parent_is_gone, daemon=True).start()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_server(settings, [listening], ready))


def _stop_when_the_parent_is_gone() -> None:
    """The parent keeps our stdin open while it runs: at its end, stop as on a SIGTERM."""
    with contextlib.suppress(OSError):  # os.read: a daemon thread must hold no lock at exit
        while os.read(sys.stdin.fileno(), 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
