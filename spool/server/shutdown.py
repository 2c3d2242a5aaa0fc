"""How ``spool serve`` stops, within ``SPOOL_SHUTDOWN_SECONDS`` of the first SIGTERM or SIGINT.

1. The listeners close (nothing new is accepted), every open SSE stream gets a final comment
   (``: server shutting down, reconnect with Last-Event-ID``) and ends, and so does any stream
   a kept-alive connection opens from then on.
2. At the same time, for up to half the time: HTTP requests in flight finish (their appends
   commit), and the worker claims nothing more, lets each running turn step finish and hands
   its leases back (another worker, in any process, takes the sessions at once).
3. The engine drains (appends queued, published), the fan-out stops, then the embedded Valkey,
   then Postgres.

A second signal, or the time running out, exits at once: the embedded services are asked to
stop (not waited for), then the process exits with 128 + the signal's number (the time running
out: 1). Whatever was cut short is recovered from the log, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from api.sse import SHUTTING_DOWN
from engine.logging import get_logger

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.log.open_streams import OpenStreams

log = get_logger("shutdown")

TIMED_OUT = 1  # the exit code when SPOOL_SHUTDOWN_SECONDS ran out


class StopClock:
    """The clock of a stop: ``signalled`` from a signal handler (the first starts it, a second
    exits at once), ``done`` once everything stopped; ``stop_now`` is what a forced exit asks
    of what still runs (it must not wait, nor take a lock).

    A signal handler runs between two bytecodes of the main thread, which may be inside a log
    write holding structlog's (non-reentrant) lock: so the handler itself only sets flags and
    wakes the event loop, and the forced exit writes its line with ``os.write``."""

    def __init__(self, stop_now: Callable[[], None], seconds: float) -> None:
        self._stop_now = stop_now
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._signal: int | None = None
        self._since: float | None = None
        self._watchdog: threading.Timer | None = None

    @property
    def stopping(self) -> bool:
        return self._signal is not None

    def signalled(self, sig: int) -> None:
        """From the signal handler: nothing here may take a lock."""
        if self._signal is not None:
            self._exit_now(128 + sig, f"a second {signal.Signals(sig).name}")
        self._signal, self._since = sig, time.monotonic()
        self._loop.call_soon_threadsafe(self._started)

    def _started(self) -> None:
        assert self._signal is not None and self._since is not None
        log.info("shutdown.started", signal=signal.Signals(self._signal).name,
                 seconds=self.seconds)
        # A thread, not the event loop: it must fire even if the loop is stuck.
        left = max(self.seconds - (time.monotonic() - self._since), 0.0)
        self._watchdog = threading.Timer(
            left, self._exit_now, (TIMED_OUT, f"SPOOL_SHUTDOWN_SECONDS={self.seconds:g} ran out"))
        self._watchdog.daemon = True
        self._watchdog.start()

    def done(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._since is not None:
            log.info("shutdown.done", seconds=round(time.monotonic() - self._since, 3))

    def _exit_now(self, code: int, why: str) -> None:
        """Ask what runs to stop (no waiting) and exit: no lock, no logger."""
        line = json.dumps({"reason": why, "exit_code": code, "event": "shutdown.forced",
                           "level": "warning", "timestamp": datetime.now(UTC).isoformat()})
        try:
            self._stop_now()
        finally:
            with contextlib.suppress(OSError):
                os.write(sys.stdout.fileno(), b"\n" + line.encode() + b"\n")
            os._exit(code)


class Stopping(StopClock):
    """A server's stop: driven by the server, ``signalled`` from its signal handler, ``drain``
    from its shutdown; a forced exit asks the embedded services to stop."""

    def __init__(self, engine: Engine, streams: OpenStreams, seconds: float) -> None:
        super().__init__(engine.stop_services_now, seconds)
        self._engine = engine
        self._streams = streams

    @property
    def grace(self) -> float:
        """How long requests in flight and running turn steps get."""
        return self.seconds / 2

    async def drain(self, http_requests: Awaitable[None]) -> None:
        """Steps 1 and 2; ``http_requests`` is uvicorn's own wait for its connections."""
        closed = self._streams.close_for_good(SHUTTING_DOWN)
        worker = asyncio.create_task(self._engine.stop_worker(self.grace))
        log.info("shutdown.streams_closed", streams=closed)
        try:
            await http_requests
        finally:
            await worker
