"""Where the client commands find their server and key: flags > environment > the profile in
the config file > defaults.

The file (``SPOOL_CONFIG``, else ``$XDG_CONFIG_HOME/spool/config.toml``, else
``~/.config/spool/config.toml``) holds named profiles and which one is used by default:

    default_profile = "work"

    [profiles.work]
    base_url = "http://127.0.0.1:8700"
    api_key = "spk_..."
    tenant_id = "ten_..."

It holds keys, so it is written with mode 0600 (its directory 0700), whole, through a temporary
file renamed over it: a reader never sees half a file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_BASE_URL = "http://127.0.0.1:8700"
DEFAULT_PROFILE = "default"
PROFILE_KEYS = ("base_url", "api_key", "tenant_id")


class ConfigError(Exception):
    """The config file or a setting is unusable; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a client command connects with, and where each value came from."""

    profile: str
    base_url: str
    api_key: str | None
    tenant_id: str | None
    path: Path


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("SPOOL_CONFIG"):
        return Path(env["SPOOL_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "spool" / "config.toml"


def load(path: Path) -> dict[str, Any]:
    """The file's contents; an empty config when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    if not isinstance(data.get("profiles", {}), dict):
        raise ConfigError(f"{path}: profiles must be a table of [profiles.NAME] tables")
    return data


def profile_of(config: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    profile = config.get("profiles", {}).get(name, {})
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    for key in PROFILE_KEYS:
        if key in profile and not isinstance(profile[key], str):
            raise ConfigError(f"{path}: profiles.{name}.{key} must be a string")
    return profile


def resolve(flags: Mapping[str, str | None], env: Mapping[str, str] = os.environ) -> Resolved:
    """The settings of one command: each from its flag, else its SPOOL_* variable, else the
    profile (``--profile``, SPOOL_PROFILE, the file's ``default_profile``, "default")."""
    path = config_path(env)
    config = load(path)
    name = flags.get("profile") or env.get("SPOOL_PROFILE") or config.get(
        "default_profile") or DEFAULT_PROFILE
    if not isinstance(name, str):
        raise ConfigError(f"{path}: default_profile must be a string")
    explicit = bool(flags.get("profile") or env.get("SPOOL_PROFILE"))
    if explicit and name not in config.get("profiles", {}):
        raise ConfigError(f"no profile {name!r} in {path} (create it with `spool init "
                          f"--profile {name}`)")
    profile = profile_of(config, name, path)

    def pick(key: str, variable: str) -> str | None:
        return flags.get(key) or env.get(variable) or profile.get(key) or None

    return Resolved(profile=name, base_url=pick("base_url", "SPOOL_BASE_URL") or DEFAULT_BASE_URL,
                    api_key=pick("api_key", "SPOOL_API_KEY"),
                    tenant_id=pick("tenant_id", "SPOOL_TENANT_ID"), path=path)


def save_profile(path: Path, name: str, values: Mapping[str, str], *,
                 make_default: bool) -> None:
    """Write profile ``name`` (replacing one of that name), keeping the rest of the file."""
    config = load(path)
    profiles = config.setdefault("profiles", {})
    profiles[name] = {key: values[key] for key in PROFILE_KEYS if values.get(key)}
    if make_default or "default_profile" not in config:
        config["default_profile"] = name
    write(path, config)


def write(path: Path, config: Mapping[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            tomli_w.dump(config, file)
        os.chmod(temporary, 0o600)  # O_CREAT's mode is masked by the umask; this is not
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
