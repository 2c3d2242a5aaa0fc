"""The ``spool`` client commands as real processes (``python -m spool.cli``) against a live
server: a home directory of their own (so no one's ~/.config/spool is read), the output
captured, processes that keep running (``send --follow``, ``tail``) read line by line, and a
TCP proxy between the command and the server that can cut its connections."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ESCAPE = re.compile(r"\x1b\[")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without SPOOL_* or colour switches, HOME in ``home``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPOOL_") and k not in (
               "NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


class Spool:
    """``spool ARGS...`` with the key and server of one tenant in the environment (or a
    profile, once ``env`` no longer names them)."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = env

    def run(self, *argv: str, input: str | None = None, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spool.cli", *argv], input=input,
                              env=cli_env(self.home, **{**self.env, **env}),
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *argv: str, **env: str) -> str:
        """Run it; it must exit 0 with no escape sequence (stdout is no terminal)."""
        done = self.run(*argv, **env)
        assert done.returncode == 0, f"spool {' '.join(argv)}: {done.returncode}\n{done.stderr}"
        assert not ESCAPE.search(done.stdout + done.stderr), done.stdout + done.stderr
        return done.stdout

    def json(self, *argv: str, **env: str) -> Any:
        return json.loads(self.ok(*argv, "--json", **env))

    def until(self, check: Callable[[Any], bool], *argv: str, timeout: float = 30) -> Any:
        """``json(*argv)`` once ``check`` holds: a view (a projection) that another process
        wrote to catches up a moment later."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.json(*argv)
            if check(found):
                return found
            assert time.monotonic() < deadline, f"spool {' '.join(argv)}: still {found}"
            time.sleep(0.1)

    def start(self, *argv: str, **env: str) -> Running:
        return Running([sys.executable, "-m", "spool.cli", *argv],
                       cli_env(self.home, **{**self.env, **env}))


class Running:
    """A ``spool`` process that keeps running: its stdout and stderr lines as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(pipe, into), daemon=True)
                         for pipe, into in ((self.proc.stdout, self.stdout),
                                            (self.proc.stderr, self.stderr))]
        for thread in self._threads:
            thread.start()

    def _read(self, pipe: Any, into: list[str]) -> None:
        for line in pipe:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, *, stream: str = "stdout", count: int = 1,
                 timeout: float = 60) -> list[str]:
        """The lines matching ``pattern`` once there are ``count`` of them."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in lines if re.search(pattern, line)]
                if len(found) >= count:
                    return found
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(f"no {count} line(s) matching {pattern!r} on {stream} within "
                             f"{timeout:.0f}s\n{self.output()}")

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    def interrupt(self) -> int:
        """Ctrl-C, as a person stops ``tail``; the exit code."""
        self.proc.send_signal(2)
        return self.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def output(self) -> str:
        return ("--- stdout:\n" + "\n".join(self.stdout)
                + "\n--- stderr:\n" + "\n".join(self.stderr))


class Proxy:
    """A TCP proxy on a free port to ``target`` (host, port). ``cut()`` closes every connection
    through it (a dropped network, as a client sees it); while ``refusing`` it hangs up on each
    new connection at once."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.refusing = False
        self.refused = 0
        self._refused = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                with self._refused:
                    self.refused += 1
                    self._refused.notify_all()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def wait_refused(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` more connections were hung up on."""
        with self._refused:
            target = self.refused + count
            assert self._refused.wait_for(lambda: self.refused >= target, timeout), \
                f"{self.refused} connections refused, not {target}"

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
