"""One frozen ``Settings`` object, read from ``SPOOL_*`` environment variables and CLI flags.

Validation happens once, at start: a bad value raises ``SettingsError`` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from engine.prices import ModelPrice, parse_prices


class SettingsError(ValueError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".spool")
    host: str = "127.0.0.1"
    port: int = 8700
    # `spool serve` processes serving the one port (``spool/server/processes.py``).
    processes: int = 1
    admin_token: str | None = None
    max_body_bytes: int = 1_048_576
    # The body of POST /v1/sessions/import (an NDJSON export, checked whole before any write).
    import_max_bytes: int = 67_108_864
    # Events (and session ids) an export reads from Postgres at a time: what it holds at once.
    export_page_events: int = 1000
    # Free-form JSON in a body (model.params, a tool's input_schema, ...): levels, bytes.
    max_json_depth: int = 64
    max_json_field_bytes: int = 65_536
    log_level: str = "info"
    cors_origins: tuple[str, ...] = ()
    db_pool_size: int = 10
    append_batch_max: int = 1000
    sse_buffer_events: int = 1000
    sse_keepalive_seconds: float = 15.0
    auth_cache_seconds: float = 1.0
    # How long after its expiry a stream token still resumes a stream by Last-Event-ID.
    stream_token_resume_seconds: int = 86_400
    workers: int = 8
    lease_seconds: float = 10.0
    # An agent whose runtime sent heartbeats is offline once the last is older than this.
    agent_offline_seconds: float = 60.0
    # Model providers: keys stay here (never in events or logs); an adapter is available only
    # when its provider is configured.
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    anthropic_base_url: str | None = None
    anthropic_api_key: str | None = None
    model_timeout_seconds: float = 60.0
    # Added to (or replacing entries of) the default price table, USD per million tokens;
    # (model, price) pairs: a tuple keeps Settings hashable.
    prices: tuple[tuple[str, ModelPrice], ...] = ()
    # How long a budget check waits for the budgets view to reach the log head.
    budget_wait_seconds: float = 5.0
    # Messages (turn submissions) a tenant may POST per minute, across all processes; 0: no limit.
    turn_rate_limit: int = 6000
    # How long the log may be ahead of the Redis stream before this process's relay publishes
    # the difference (events whose process died between commit and publish).
    relay_seconds: float = 1.0
    # HTTP server limits (api/server.py): the request head (request line and headers) and its
    # header count, how long a head and a body may take to arrive, how long an idle keep-alive
    # connection stays open, and how many connections are served at once.
    http_max_header_bytes: int = 32_768
    http_max_headers: int = 100
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_keepalive_seconds: float = 5.0
    http_max_connections: int = 1000
    # Turns of one tenant running at once, across every worker process; 0: no cap.
    tenant_max_running_turns: int = 4
    # Tries of a turn's step (a claim each) before the turn ends failed.
    step_max_tries: int = 5
    # From the first SIGTERM/SIGINT to exit: streams closed, requests and turn steps drained,
    # leases handed back, services stopped (what is still running after it is abandoned).
    shutdown_seconds: float = 10.0

    def __repr__(self) -> str:
        """Secrets masked: settings may end up in a log or a traceback."""
        shown = {f: getattr(self, f) for f in self.__struct_fields__}
        for name in _SECRETS:
            if shown[name] is not None:
                shown[name] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def embedded(self) -> bool:
        """True when at least one service must be started from the data dir."""
        return self.database_url is None or self.redis_url is None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Build settings from ``SPOOL_*`` variables; ``overrides`` (CLI flags) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, parse in _PARSERS.items():
            variable = f"SPOOL_{field.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "" or overrides.get(field) is not None:
                continue  # unset, or a flag wins (and a bad variable it overrides is moot)
            values[field] = _parse(variable, raw, parse)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        _check(self.port, 0 <= self.port <= 65535, "SPOOL_PORT", "must be between 0 and 65535")
        _check(self.processes, 1 <= self.processes <= 64, "SPOOL_PROCESSES",
               "must be between 1 and 64")
        _check(self.max_body_bytes, self.max_body_bytes >= 1024, "SPOOL_MAX_BODY_BYTES",
               "must be at least 1024")
        _check(self.import_max_bytes, 1024 <= self.import_max_bytes <= 1 << 31,
               "SPOOL_IMPORT_MAX_BYTES", "must be between 1024 and 2147483648")
        _check(self.export_page_events, 1 <= self.export_page_events <= 1000,
               "SPOOL_EXPORT_PAGE_EVENTS", "must be between 1 and 1000")
        _check(self.max_json_depth, 1 <= self.max_json_depth <= 256, "SPOOL_MAX_JSON_DEPTH",
               "must be between 1 and 256")
        _check(self.max_json_field_bytes, self.max_json_field_bytes >= 1024,
               "SPOOL_MAX_JSON_FIELD_BYTES", "must be at least 1024")
        _check(self.db_pool_size, 2 <= self.db_pool_size <= 1000, "SPOOL_DB_POOL_SIZE",
               "must be between 2 and 1000")
        _check(self.append_batch_max, 1 <= self.append_batch_max <= 100_000,
               "SPOOL_APPEND_BATCH_MAX", "must be between 1 and 100000")
        _check(self.sse_buffer_events, 1 <= self.sse_buffer_events <= 1_000_000,
               "SPOOL_SSE_BUFFER_EVENTS", "must be between 1 and 1000000")
        _check(self.sse_keepalive_seconds, 0.01 <= self.sse_keepalive_seconds <= 3600,
               "SPOOL_SSE_KEEPALIVE_SECONDS", "must be between 0.01 and 3600")
        _check(self.workers, 0 <= self.workers <= 10_000, "SPOOL_WORKERS",
               "must be between 0 and 10000")
        _check(self.lease_seconds, 1 <= self.lease_seconds <= 3600, "SPOOL_LEASE_SECONDS",
               "must be between 1 and 3600")
        _check(self.agent_offline_seconds, 0.1 <= self.agent_offline_seconds <= 86_400,
               "SPOOL_AGENT_OFFLINE_SECONDS", "must be between 0.1 and 86400")
        _check(self.model_timeout_seconds, 1 <= self.model_timeout_seconds <= 3600,
               "SPOOL_MODEL_TIMEOUT_SECONDS", "must be between 1 and 3600")
        _check(self.turn_rate_limit, 0 <= self.turn_rate_limit <= 10_000_000,
               "SPOOL_TURN_RATE_LIMIT", "must be between 0 and 10000000")
        _check(self.tenant_max_running_turns, 0 <= self.tenant_max_running_turns <= 100_000,
               "SPOOL_TENANT_MAX_RUNNING_TURNS", "must be between 0 and 100000")
        _check(self.step_max_tries, 1 <= self.step_max_tries <= 100, "SPOOL_STEP_MAX_TRIES",
               "must be between 1 and 100")
        _check(self.budget_wait_seconds, 0.1 <= self.budget_wait_seconds <= 60,
               "SPOOL_BUDGET_WAIT_SECONDS", "must be between 0.1 and 60")
        _check(self.relay_seconds, 0.1 <= self.relay_seconds <= 3600, "SPOOL_RELAY_SECONDS",
               "must be between 0.1 and 3600")
        self._validate_http_limits()
        _check(self.shutdown_seconds, 1 <= self.shutdown_seconds <= 3600,
               "SPOOL_SHUTDOWN_SECONDS", "must be between 1 and 3600")
        for name in ("openai_base_url", "anthropic_base_url"):
            url = getattr(self, name)
            _check(url, url is None or url.startswith(("http://", "https://")),
                   f"SPOOL_{name.upper()}", "must be an http:// or https:// URL")
        _check(self.auth_cache_seconds, 0 <= self.auth_cache_seconds <= 60,
               "SPOOL_AUTH_CACHE_SECONDS", "must be between 0 and 60")
        _check(self.stream_token_resume_seconds,
               0 <= self.stream_token_resume_seconds <= 604_800,
               "SPOOL_STREAM_TOKEN_RESUME_SECONDS", "must be between 0 and 604800")
        _check(self.log_level, self.log_level in _LOG_LEVELS, "SPOOL_LOG_LEVEL",
               f"must be one of {', '.join(_LOG_LEVELS)}")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgres://", "postgresql://")
        ):
            raise SettingsError("SPOOL_DATABASE_URL", "must start with postgresql://")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise SettingsError("SPOOL_REDIS_URL", "must start with redis://, rediss:// or unix://")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise SettingsError("SPOOL_ADMIN_TOKEN", "must be at least 16 characters")


    def _validate_http_limits(self) -> None:
        _check(self.http_max_header_bytes, 1024 <= self.http_max_header_bytes <= 1_048_576,
               "SPOOL_HTTP_MAX_HEADER_BYTES", "must be between 1024 and 1048576")
        _check(self.http_max_headers, 8 <= self.http_max_headers <= 10_000,
               "SPOOL_HTTP_MAX_HEADERS", "must be between 8 and 10000")
        for name in ("http_header_timeout_seconds", "http_body_timeout_seconds",
                     "http_keepalive_seconds"):
            value = getattr(self, name)
            _check(value, 0.1 <= value <= 3600, f"SPOOL_{name.upper()}",
                   "must be between 0.1 and 3600")
        _check(self.http_max_connections, 1 <= self.http_max_connections <= 1_000_000,
               "SPOOL_HTTP_MAX_CONNECTIONS", "must be between 1 and 1000000")


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _check(value: Any, ok: bool, variable: str, message: str) -> None:
    if not ok:
        raise SettingsError(variable, f"{message} (got {value!r})")


def _parse(variable: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(variable, f"cannot parse {raw!r}: {exc}") from exc


def _int(raw: str) -> int:
    return int(raw.strip())


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": str,
    "redis_url": str,
    "data_dir": Path,
    "host": str,
    "port": _int,
    "processes": _int,
    "admin_token": str,
    "max_body_bytes": _int,
    "import_max_bytes": _int,
    "export_page_events": _int,
    "max_json_depth": _int,
    "max_json_field_bytes": _int,
    "log_level": str.lower,
    "cors_origins": _csv,
    "db_pool_size": _int,
    "append_batch_max": _int,
    "sse_buffer_events": _int,
    "sse_keepalive_seconds": float,
    "auth_cache_seconds": float,
    "stream_token_resume_seconds": _int,
    "workers": _int,
    "lease_seconds": float,
    "agent_offline_seconds": float,
    "openai_base_url": str,
    "openai_api_key": str,
    "anthropic_base_url": str,
    "anthropic_api_key": str,
    "model_timeout_seconds": float,
    "prices": lambda raw: tuple(parse_prices(raw).items()),
    "budget_wait_seconds": float,
    "turn_rate_limit": _int,
    "relay_seconds": float,
    "http_max_header_bytes": _int,
    "http_max_headers": _int,
    "http_header_timeout_seconds": float,
    "http_body_timeout_seconds": float,
    "http_keepalive_seconds": float,
    "http_max_connections": _int,
    "tenant_max_running_turns": _int,
    "step_max_tries": _int,
    "shutdown_seconds": float,
}


_SECRETS = ("admin_token", "openai_api_key", "anthropic_api_key", "database_url", "redis_url")
