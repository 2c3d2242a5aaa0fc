"""``spool`` as a process: --version, `init` writing a profile (0600) that later commands use,
the precedence flags > environment > profile, and the exit codes (2 for usage, 1 for the API
with the server's message and request id on stderr)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from tests.api.conftest import LiveApp
from tests.conftest import ADMIN_TOKEN
from tests.helpers_cli import ESCAPE, Spool


def test_version_prints_the_distributions_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = Spool(tmp_path).run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"spool {version('agentspool')}\n"


def test_init_creates_a_tenant_and_an_owner_key_in_a_private_profile(
        live_app: LiveApp, tmp_path: Path) -> None:
    cli = Spool(tmp_path)
    out = cli.ok("init", "--base-url", live_app.base_url, "--name", "acme cli",
                 SPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    path = tmp_path / ".config" / "spool" / "config.toml"
    assert f"saved them as profile 'default' in {path}" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = tomllib.loads(path.read_text())
    assert config["default_profile"] == "default"
    profile = config["profiles"]["default"]
    assert profile["base_url"] == live_app.base_url
    assert profile["api_key"].startswith("spk_")
    assert profile["api_key"] not in out  # the secret stays in the file
    tenant = live_app.request("GET", f"/v1/tenants/{profile['tenant_id']}", ADMIN_TOKEN).json()
    assert tenant["name"] == "acme cli"

    # The profile is all a command needs: the key is the new tenant's owner.
    made = cli.json("boards", "create", "launch")
    keys = cli.json("keys", "list")
    assert [key["role"] for key in keys] == ["owner"]
    cli.until(lambda boards: [b["id"] for b in boards] == [made["id"]], "boards", "list")


def test_init_refuses_to_replace_a_profile_unless_forced(live_app: LiveApp,
                                                         tmp_path: Path) -> None:
    cli = Spool(tmp_path, SPOOL_ADMIN_TOKEN=ADMIN_TOKEN, SPOOL_BASE_URL=live_app.base_url)
    cli.ok("init", "--profile", "work")
    again = cli.run("init", "--profile", "work")
    assert again.returncode == 2
    assert "profile 'work' exists" in again.stderr and "--force" in again.stderr
    first = _profile(tmp_path, "work")
    cli.ok("init", "--profile", "work", "--force")
    assert _profile(tmp_path, "work")["tenant_id"] != first["tenant_id"]
    cli.ok("init", "--profile", "other")
    config = tomllib.loads((tmp_path / ".config/spool/config.toml").read_text())
    assert config["default_profile"] == "work"  # the first one stays the default
    assert set(config["profiles"]) == {"work", "other"}


def test_init_without_an_admin_token_is_a_usage_error(tmp_path: Path) -> None:
    done = Spool(tmp_path).run("init")
    assert done.returncode == 2
    assert done.stderr == "error: no admin token: pass --admin-token or set " \
        "SPOOL_ADMIN_TOKEN\n"


def test_flags_win_over_the_environment_which_wins_over_the_profile(
        live_app: LiveApp, tmp_path: Path) -> None:
    cli = Spool(tmp_path, SPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    cli.ok("init", "--base-url", live_app.base_url)
    dead = "http://127.0.0.1:9"  # nothing listens there
    from_profile = cli.json("keys", "list")
    assert len(from_profile) == 1
    unreachable = cli.run("keys", "list", SPOOL_BASE_URL=dead)  # env over profile
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(f"error: GET {dead}/v1/api_keys: ")
    assert unreachable.stderr.endswith("(connection_error)\n")
    assert cli.json("keys", "list", "--base-url", live_app.base_url,
                    SPOOL_BASE_URL=dead) == from_profile  # flag over env
    other = live_app.key(live_app.tenant("other"), "owner")
    assert cli.json("keys", "list", SPOOL_API_KEY=other) != from_profile
    # SPOOL_CONFIG moves the file; SPOOL_PROFILE names a profile that must exist.
    moved = cli.run("keys", "list", SPOOL_CONFIG=str(tmp_path / "elsewhere.toml"))
    assert moved.returncode == 2 and "no API key for profile 'default'" in moved.stderr
    missing = cli.run("keys", "list", SPOOL_PROFILE="nope")
    assert missing.returncode == 2
    assert "no profile 'nope' in" in missing.stderr


def test_an_api_error_exits_1_with_the_message_and_request_id_on_stderr(cli: Spool) -> None:
    done = cli.run("agents", "show", "agt_missing")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert "not_found, HTTP 404, request " in done.stderr
    assert not ESCAPE.search(done.stderr)
    refused = cli.run("agents", "list", SPOOL_API_KEY="spk_wrong")
    assert refused.returncode == 1 and "unauthorized, HTTP 401" in refused.stderr


def test_usage_errors_exit_2(cli: Spool) -> None:
    assert cli.run("agents").returncode == 2  # a group without its action: its help
    assert "list" in cli.run("agents").stderr
    assert cli.run("agents", "frobnicate").returncode == 2
    assert cli.run("tasks", "create", "no board").returncode == 2  # --board is required
    done = cli.run("agents", "create", "a", "--file", "/nonexistent.json")
    assert done.returncode == 2 and "--file: cannot read /nonexistent.json" in done.stderr
    help_ = cli.run("approvals", "--help")
    assert help_.returncode == 0
    assert all(name in help_.stdout for name in ("list", "show", "approve", "deny"))


def _profile(home: Path, name: str) -> dict[str, str]:
    config = tomllib.loads((home / ".config/spool/config.toml").read_text())
    profile: dict[str, str] = config["profiles"][name]
    return profile
