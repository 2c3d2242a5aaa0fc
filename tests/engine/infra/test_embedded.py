"""EmbeddedServices on its own: one owner per data dir, stop/start keeps the data, and only the
services asked for are started. Real PostgreSQL and Valkey binaries, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis

from engine.infra.embedded import DataDirBusy, EmbeddedServices
from tests.helpers_processes import alive, kill_all_in, processes_in, scratch_dir, wait_gone

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = scratch_dir()
    path = base / "data"
    try:
        yield path
    finally:
        # a failed test must not leave servers behind: stop what still runs in this data dir
        kill_all_in(path)
        shutil.rmtree(base, ignore_errors=True)


async def _pg(url: str, *statements: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        result: object = None
        for statement in statements:
            result = await conn.fetchval(statement)
        return result
    finally:
        await conn.close()


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def test_a_second_owner_of_the_data_dir_is_refused(data_dir: Path) -> None:
    first = EmbeddedServices(data_dir)
    first.start()
    try:
        assert first.database_url and first.redis_url
        second = EmbeddedServices(data_dir)
        with pytest.raises(DataDirBusy) as caught:
            second.start()
        message = str(caught.value)
        assert str(data_dir.resolve()) in message
        assert "in use" in message
        assert f"pid {os.getpid()}" in message
        assert second.database_url is None and second.redis_url is None
        # the refused start touched nothing: the first owner's services still answer
        assert asyncio.run(_pg(first.database_url, "SELECT 1")) == 1
        assert redis.from_url(first.redis_url).ping() is True
        # a relative spelling of the same dir is the same dir
        relative = Path(os.path.relpath(data_dir))
        with pytest.raises(DataDirBusy, match="in use"):
            EmbeddedServices(relative).start()
    finally:
        first.stop()
    assert wait_gone(data_dir) == []
    # once the owner stopped, the dir can be taken again
    again = EmbeddedServices(data_dir, redis=False)
    again.start()
    again.stop()


def test_stop_then_start_keeps_the_data_and_stops_every_process(data_dir: Path) -> None:
    services = EmbeddedServices(data_dir)
    services.start()
    try:
        assert services.database_url and services.redis_url
        postmaster = _postmaster_pid(data_dir)
        valkey_pid = int((data_dir / "valkey" / "valkey.pid").read_text())
        assert alive(postmaster) and alive(valkey_pid)
        asyncio.run(_pg(
            services.database_url,
            "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('survives')",
        ))
        client = redis.from_url(services.redis_url)
        client.set("kept", "survives too")
        client.xadd("stream", {"n": "1"})
        client.close()
    finally:
        services.stop()
    assert services._postgres is None and services._valkey is None
    assert wait_gone(data_dir) == [], "a service outlived stop()"
    assert not alive(postmaster) and not alive(valkey_pid)
    assert not (data_dir / "pg" / "postmaster.pid").exists()

    services.start()  # the same object starts again
    try:
        assert services.database_url and services.redis_url
        kept = asyncio.run(_pg(services.database_url, "SELECT v FROM kept"))
        assert kept == "survives"
        client = redis.from_url(services.redis_url)
        assert client.get("kept") == b"survives too"  # Valkey's append-only file
        assert client.xlen("stream") == 1
        client.close()
    finally:
        services.stop()
    assert wait_gone(data_dir) == []

    with EmbeddedServices(data_dir, redis=False) as fresh:  # and so does a new one
        assert fresh.database_url is not None
        assert asyncio.run(_pg(fresh.database_url, "SELECT count(*) FROM kept")) == 1
    assert wait_gone(data_dir) == []


def test_redis_false_starts_no_valkey(data_dir: Path) -> None:
    with EmbeddedServices(data_dir, redis=False) as services:
        assert services.redis_url is None
        assert services.database_url is not None
        assert asyncio.run(_pg(services.database_url, "SELECT 1")) == 1
        assert not (data_dir / "valkey").exists()
        running = processes_in(data_dir)
        assert running and not any("valkey" in cmdline for _, cmdline in running)
    assert wait_gone(data_dir) == []


def test_postgres_false_starts_no_postgres(data_dir: Path) -> None:
    with EmbeddedServices(data_dir, postgres=False) as services:
        assert services.database_url is None
        assert services.redis_url is not None
        assert redis.from_url(services.redis_url).ping() is True
        assert not (data_dir / "pg").exists()
        running = processes_in(data_dir)
        assert running and not any("postgres" in cmdline for _, cmdline in running)
    assert wait_gone(data_dir) == []


def _raw_command(port: int, *args: bytes) -> bytes:
    """One RESP command over a fresh socket, with no AUTH: what any local process could send."""
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(256)


def test_the_embedded_valkey_needs_its_generated_password(data_dir: Path) -> None:
    with EmbeddedServices(data_dir, postgres=False) as services:
        assert services.redis_url is not None
        url = urlsplit(services.redis_url)
        password, port = url.password, url.port
        assert password and len(password) >= 32 and port
        # without the password a local process can neither forge an event nor read one
        refused = _raw_command(port, b"XADD", b"spool:{log}:events", b"*", b"e", b"forged")
        assert refused.startswith(b"-NOAUTH"), refused
        assert _raw_command(port, b"XLEN", b"spool:{log}:events").startswith(b"-NOAUTH")
        client = redis.from_url(services.redis_url)  # the URL carries it
        assert client.xadd("stream", {"n": "1"})
        client.close()
        auth = data_dir / "valkey" / "auth.conf"
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        valkey_pid = int((data_dir / "valkey" / "valkey.pid").read_text())
        assert password.encode() not in Path(f"/proc/{valkey_pid}/cmdline").read_bytes()
        for name in ("valkey.conf", "valkey.log"):
            assert password not in (data_dir / "valkey" / name).read_text(), name
    auth.chmod(0o644)

    with EmbeddedServices(data_dir, postgres=False) as again:  # created once, then reused
        assert again.redis_url is not None
        assert urlsplit(again.redis_url).password == password
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        client = redis.from_url(again.redis_url)
        assert client.xlen("stream") == 1
        client.close()
    assert wait_gone(data_dir) == []


def test_the_services_run_in_a_session_of_their_own(data_dir: Path) -> None:
    """A terminal's Ctrl-C (SIGINT to its foreground process group) must reach spool serve
    only: it stops the services itself, in order."""
    with EmbeddedServices(data_dir):
        for name, pid in (("postgres", _postmaster_pid(data_dir)),
                          ("valkey", int((data_dir / "valkey" / "valkey.pid").read_text()))):
            assert os.getpgid(pid) != os.getpgid(0), f"{name} is in our process group"
            assert os.getsid(pid) == pid, f"{name} does not lead a session of its own"
    assert wait_gone(data_dir) == []


_START_AGAIN = """
import asyncio
import sys
import asyncpg
from pathlib import Path
from engine.infra.embedded import EmbeddedServices
from engine.logging import configure_logging
configure_logging("info")


async def answers(url: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.fetchval("SELECT 1")
    await conn.close()


with EmbeddedServices(Path(sys.argv[1]), redis=False) as services:
    assert services.database_url is not None
    asyncio.run(answers(services.database_url))
    print("started", services.database_url, flush=True)
"""


def _forget(services: EmbeddedServices) -> None:
    """What a crashed spool process leaves: no stop of Postgres, its handle and the lock gone."""
    services._postgres.global_process_id_list.get_and_remove(os.getpid())
    services._postgres = None
    services.stop()


def _start_again(data_dir: Path) -> subprocess.Popen[str]:
    """A new process starting the services on ``data_dir``, as a restarted spool serve does."""
    return subprocess.Popen(
        [sys.executable, "-c", _START_AGAIN, str(data_dir)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


async def _stopped_backend(url: str) -> int:
    """A backend frozen (SIGSTOP) while its connection is open: it cannot notice anything."""
    conn = await asyncpg.connect(url)
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    os.kill(pid, signal.SIGSTOP)
    conn.terminate()
    return pid


def test_a_start_right_after_a_crash_waits_for_the_old_backends(data_dir: Path) -> None:
    """The postmaster died (SIGKILL) but one of its backends still runs (here: stopped, so it
    cannot notice), holding the old shared memory: a new start waits for it, saying so, instead
    of failing, and starts once it exited."""
    crashed = EmbeddedServices(data_dir, redis=False)
    crashed.start()
    assert crashed.database_url is not None
    backend = asyncio.run(_stopped_backend(crashed.database_url))
    try:
        os.kill(_postmaster_pid(data_dir), signal.SIGKILL)
        _forget(crashed)
        again = _start_again(data_dir)
        try:
            assert again.stdout is not None
            waiting = again.stdout.readline()  # blocks until it logs (or exits: "")
            assert "embedded.waiting_for_old_postgres" in waiting, waiting
            assert str(backend) in waiting, waiting
            time.sleep(1)
            assert again.poll() is None, "it gave up instead of waiting"
        finally:
            os.kill(backend, signal.SIGCONT)  # it notices its postmaster is gone, and exits
        out, _ = again.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGKILL)
    assert again.returncode == 0, out
    assert "embedded.old_postgres_gone" in out and "started postgresql://" in out, out
    assert wait_gone(data_dir) == []


def test_a_start_waits_for_an_old_postmaster_still_shutting_down(data_dir: Path) -> None:
    """A stop cut short (a forced exit) leaves the postmaster finishing its shutdown; here a
    smart shutdown that waits for our client. Reusing it would fail ("the database system is
    shutting down"): the start waits for it to exit, then starts a new one."""
    old = EmbeddedServices(data_dir, redis=False)
    old.start()
    assert old.database_url is not None
    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(asyncpg.connect(old.database_url))
    postmaster = _postmaster_pid(data_dir)
    try:
        os.kill(postmaster, signal.SIGTERM)  # smart shutdown: "stopping" until clients leave
        deadline = time.monotonic() + 30
        while "stopping" not in (data_dir / "pg" / "postmaster.pid").read_text():
            assert time.monotonic() < deadline, "the postmaster did not start stopping"
            time.sleep(0.05)
        _forget(old)
        again = _start_again(data_dir)
        assert again.stdout is not None
        waiting = again.stdout.readline()
        assert "embedded.waiting_for_old_postgres" in waiting, waiting
        assert str(postmaster) in waiting, waiting
    finally:
        loop.run_until_complete(client.close())  # the smart shutdown can end now
        loop.close()
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert "started postgresql://" in out, out
    assert _postmaster_pid_or_none(data_dir) is None
    assert wait_gone(data_dir) == []


def _postmaster_pid_or_none(data_dir: Path) -> int | None:
    try:
        return _postmaster_pid(data_dir)
    except OSError:
        return None


def test_private_files_are_owner_only_from_their_first_byte(tmp_path: Path) -> None:
    """services.json (URLs with the Valkey password) and the password file are created 0600,
    never written first and narrowed after, whatever the umask."""
    from engine.infra.embedded import write_private

    target = tmp_path / "services.json"
    target.write_text("old")
    old_umask = os.umask(0)
    try:
        write_private(target, "secret")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not target.with_name("services.json.new").exists()
