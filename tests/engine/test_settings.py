"""Settings: one frozen object from ``SPOOL_*`` variables (passed explicitly here) and CLI flags;
every bad value fails at start with a ``SettingsError`` naming the variable. No services needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.prices import ModelPrice
from engine.settings import Settings, SettingsError

PG = "postgresql://spool:secret@db.example:5432/spool"


def test_defaults_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url is None and settings.redis_url is None
    assert settings.data_dir == Path(".spool")
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)
    assert settings.admin_token is None
    assert settings.max_body_bytes == 1_048_576
    assert settings.log_level == "info"
    assert settings.cors_origins == ()
    assert settings.db_pool_size == 10
    assert settings.append_batch_max == 1000
    assert settings.embedded is True


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("SPOOL_DATABASE_URL", PG, "database_url", PG),
        ("SPOOL_DATABASE_URL", "postgres://h/db", "database_url", "postgres://h/db"),
        ("SPOOL_REDIS_URL", "redis://cache:6379/2", "redis_url", "redis://cache:6379/2"),
        ("SPOOL_REDIS_URL", "rediss://cache:6380/0", "redis_url", "rediss://cache:6380/0"),
        ("SPOOL_REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
        ("SPOOL_DATA_DIR", "/var/lib/spool", "data_dir", Path("/var/lib/spool")),
        ("SPOOL_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("SPOOL_PORT", "9000", "port", 9000),
        ("SPOOL_PORT", " 9001 ", "port", 9001),
        ("SPOOL_PORT", "0", "port", 0),
        ("SPOOL_PORT", "65535", "port", 65535),
        ("SPOOL_PROCESSES", "1", "processes", 1),
        ("SPOOL_PROCESSES", "64", "processes", 64),
        ("SPOOL_ADMIN_TOKEN", "spa_0123456789abcdef", "admin_token", "spa_0123456789abcdef"),
        ("SPOOL_MAX_BODY_BYTES", "2048", "max_body_bytes", 2048),
        ("SPOOL_MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
        ("SPOOL_LOG_LEVEL", "debug", "log_level", "debug"),
        ("SPOOL_LOG_LEVEL", "WARNING", "log_level", "warning"),
        ("SPOOL_LOG_LEVEL", "Error", "log_level", "error"),
        ("SPOOL_CORS_ORIGINS", "https://a.example", "cors_origins", ("https://a.example",)),
        ("SPOOL_CORS_ORIGINS", "https://a.example, https://b.example,,", "cors_origins",
         ("https://a.example", "https://b.example")),
        ("SPOOL_DB_POOL_SIZE", "2", "db_pool_size", 2),
        ("SPOOL_DB_POOL_SIZE", "1000", "db_pool_size", 1000),
        ("SPOOL_APPEND_BATCH_MAX", "1", "append_batch_max", 1),
        ("SPOOL_APPEND_BATCH_MAX", "100000", "append_batch_max", 100_000),
        ("SPOOL_SSE_BUFFER_EVENTS", "10", "sse_buffer_events", 10),
        ("SPOOL_SSE_KEEPALIVE_SECONDS", "0.5", "sse_keepalive_seconds", 0.5),
        ("SPOOL_AUTH_CACHE_SECONDS", "0", "auth_cache_seconds", 0.0),
        ("SPOOL_STREAM_TOKEN_RESUME_SECONDS", "0", "stream_token_resume_seconds", 0),
        ("SPOOL_STREAM_TOKEN_RESUME_SECONDS", "604800", "stream_token_resume_seconds", 604_800),
        ("SPOOL_WORKERS", "0", "workers", 0),
        ("SPOOL_LEASE_SECONDS", "2.5", "lease_seconds", 2.5),
        ("SPOOL_AGENT_OFFLINE_SECONDS", "0.5", "agent_offline_seconds", 0.5),
        ("SPOOL_OPENAI_BASE_URL", "http://localhost:11434/v1", "openai_base_url",
         "http://localhost:11434/v1"),
        ("SPOOL_OPENAI_API_KEY", "sk-x", "openai_api_key", "sk-x"),
        ("SPOOL_ANTHROPIC_BASE_URL", "https://proxy.example", "anthropic_base_url",
         "https://proxy.example"),
        ("SPOOL_ANTHROPIC_API_KEY", "sk-ant-x", "anthropic_api_key", "sk-ant-x"),
        ("SPOOL_MODEL_TIMEOUT_SECONDS", "600", "model_timeout_seconds", 600.0),
        ("SPOOL_PRICES", '{"my-model": {"input": 1, "output": 2.5}}', "prices",
         (("my-model", ModelPrice(input=1.0, output=2.5)),)),
        ("SPOOL_BUDGET_WAIT_SECONDS", "0.5", "budget_wait_seconds", 0.5),
        ("SPOOL_TURN_RATE_LIMIT", "0", "turn_rate_limit", 0),
        ("SPOOL_HTTP_MAX_HEADER_BYTES", "1024", "http_max_header_bytes", 1024),
        ("SPOOL_HTTP_MAX_HEADERS", "8", "http_max_headers", 8),
        ("SPOOL_HTTP_HEADER_TIMEOUT_SECONDS", "0.5", "http_header_timeout_seconds", 0.5),
        ("SPOOL_HTTP_BODY_TIMEOUT_SECONDS", "120", "http_body_timeout_seconds", 120.0),
        ("SPOOL_HTTP_KEEPALIVE_SECONDS", "75", "http_keepalive_seconds", 75.0),
        ("SPOOL_HTTP_MAX_CONNECTIONS", "1", "http_max_connections", 1),
        ("SPOOL_TENANT_MAX_RUNNING_TURNS", "0", "tenant_max_running_turns", 0),
        ("SPOOL_STEP_MAX_TRIES", "1", "step_max_tries", 1),
    ],
)
def test_each_variable_is_parsed(variable: str, raw: str, field: str, expected: Any) -> None:
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == expected
    # nothing else moved
    others = {f: getattr(Settings(), f) for f in Settings.__struct_fields__ if f != field}
    assert {f: getattr(settings, f) for f in others} == others


def test_all_variables_together() -> None:
    env = {
        "SPOOL_DATABASE_URL": PG, "SPOOL_REDIS_URL": "redis://r:6379/0",
        "SPOOL_DATA_DIR": "data", "SPOOL_HOST": "::1", "SPOOL_PORT": "1234",
        "SPOOL_ADMIN_TOKEN": "x" * 16, "SPOOL_MAX_BODY_BYTES": "4096", "SPOOL_LOG_LEVEL": "error",
        "SPOOL_CORS_ORIGINS": "http://x", "SPOOL_DB_POOL_SIZE": "5",
        "SPOOL_APPEND_BATCH_MAX": "50",
        "UNRELATED": "ignored", "SPOOL_UNKNOWN": "ignored",
    }
    assert Settings.from_env(env) == Settings(
        database_url=PG, redis_url="redis://r:6379/0", data_dir=Path("data"), host="::1",
        port=1234, admin_token="x" * 16, max_body_bytes=4096, log_level="error",
        cors_origins=("http://x",), db_pool_size=5, append_batch_max=50,
    )


def test_embedded_unless_both_urls_are_given() -> None:
    assert Settings.from_env({"SPOOL_DATABASE_URL": PG}).embedded is True
    assert Settings.from_env({"SPOOL_REDIS_URL": "redis://r"}).embedded is True
    both = {"SPOOL_DATABASE_URL": PG, "SPOOL_REDIS_URL": "redis://r"}
    assert Settings.from_env(both).embedded is False


@pytest.mark.parametrize("variable", ["SPOOL_PORT", "SPOOL_LOG_LEVEL", "SPOOL_DATABASE_URL",
                                      "SPOOL_ADMIN_TOKEN", "SPOOL_CORS_ORIGINS"])
def test_an_empty_variable_means_unset(variable: str) -> None:
    assert Settings.from_env({variable: ""}) == Settings()


def test_cli_overrides_win_over_the_environment() -> None:
    env = {"SPOOL_PORT": "9000", "SPOOL_HOST": "0.0.0.0", "SPOOL_LOG_LEVEL": "debug",
           "SPOOL_DATA_DIR": "/env/dir", "SPOOL_DATABASE_URL": PG,
           "SPOOL_REDIS_URL": "redis://env:6379/0"}
    settings = Settings.from_env(
        env, port=0, host="127.0.0.2", log_level="warning", data_dir=Path("/flag/dir"),
        database_url="postgresql://flag/db", redis_url="redis://flag:6379/1",
    )
    assert settings.port == 0
    assert settings.host == "127.0.0.2"
    assert settings.log_level == "warning"
    assert settings.data_dir == Path("/flag/dir")
    assert settings.database_url == "postgresql://flag/db"
    assert settings.redis_url == "redis://flag:6379/1"


def test_a_none_override_leaves_the_environment_value() -> None:
    # argparse passes None for a flag that was not given
    settings = Settings.from_env({"SPOOL_PORT": "9000"}, port=None, host=None)
    assert (settings.port, settings.host) == (9000, "127.0.0.1")


def test_a_cli_override_replaces_a_bad_environment_value_and_is_validated_too() -> None:
    # the flag wins, so the bad env value is never used...
    assert Settings.from_env({"SPOOL_PORT": "70000"}, port=8000).port == 8000
    # ...but an out-of-range flag is still rejected, naming the setting
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({}, port=70000)
    assert caught.value.variable == "SPOOL_PORT"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOOL_PORT", "4321")
    monkeypatch.setenv("SPOOL_LOG_LEVEL", "DEBUG")
    settings = Settings.from_env()
    assert (settings.port, settings.log_level) == (4321, "debug")


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({"SPOOL_PORT": "9000"})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.database_url = PG  # type: ignore[misc]
    assert settings.port == 9000
    assert hash(settings) == hash(Settings.from_env({"SPOOL_PORT": "9000"}))
    assert isinstance(settings.cors_origins, tuple)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SPOOL_PORT", "abc"),
        ("SPOOL_PORT", "80.5"),
        ("SPOOL_PORT", "   "),
        ("SPOOL_PORT", "70000"),
        ("SPOOL_PORT", "65536"),
        ("SPOOL_PORT", "-1"),
        ("SPOOL_PROCESSES", "0"),
        ("SPOOL_PROCESSES", "65"),
        ("SPOOL_PROCESSES", "two"),
        ("SPOOL_MAX_BODY_BYTES", "10"),
        ("SPOOL_MAX_BODY_BYTES", "1023"),
        ("SPOOL_MAX_BODY_BYTES", "1MB"),
        ("SPOOL_DATABASE_URL", "mysql://x"),
        ("SPOOL_DATABASE_URL", "localhost:5432/db"),
        ("SPOOL_REDIS_URL", "http://x"),
        ("SPOOL_REDIS_URL", "localhost:6379"),
        ("SPOOL_LOG_LEVEL", "loud"),
        ("SPOOL_LOG_LEVEL", "critical"),
        ("SPOOL_ADMIN_TOKEN", "short"),
        ("SPOOL_ADMIN_TOKEN", "x" * 15),
        ("SPOOL_DB_POOL_SIZE", "1"),
        ("SPOOL_DB_POOL_SIZE", "0"),
        ("SPOOL_DB_POOL_SIZE", "1001"),
        ("SPOOL_DB_POOL_SIZE", "ten"),
        ("SPOOL_APPEND_BATCH_MAX", "0"),
        ("SPOOL_APPEND_BATCH_MAX", "100001"),
        ("SPOOL_APPEND_BATCH_MAX", "1e3"),
        ("SPOOL_WORKERS", "-1"),
        ("SPOOL_LEASE_SECONDS", "0.5"),
        ("SPOOL_AGENT_OFFLINE_SECONDS", "0"),
        ("SPOOL_AGENT_OFFLINE_SECONDS", "86401"),
        ("SPOOL_AUTH_CACHE_SECONDS", "61"),
        ("SPOOL_STREAM_TOKEN_RESUME_SECONDS", "604801"),
        ("SPOOL_STREAM_TOKEN_RESUME_SECONDS", "-1"),
        ("SPOOL_OPENAI_BASE_URL", "localhost:11434"),
        ("SPOOL_ANTHROPIC_BASE_URL", "ftp://x"),
        ("SPOOL_MODEL_TIMEOUT_SECONDS", "0"),
        ("SPOOL_HTTP_MAX_HEADER_BYTES", "1023"),
        ("SPOOL_HTTP_MAX_HEADER_BYTES", "32k"),
        ("SPOOL_HTTP_MAX_HEADERS", "7"),
        ("SPOOL_HTTP_HEADER_TIMEOUT_SECONDS", "0"),
        ("SPOOL_HTTP_HEADER_TIMEOUT_SECONDS", "nan"),
        ("SPOOL_HTTP_BODY_TIMEOUT_SECONDS", "3601"),
        ("SPOOL_HTTP_KEEPALIVE_SECONDS", "-1"),
        ("SPOOL_HTTP_MAX_CONNECTIONS", "0"),
        ("SPOOL_PRICES", "gpt-4o=3"),
        ("SPOOL_PRICES", '{"m": {"input": 1}}'),
        ("SPOOL_PRICES", '{"m": {"input": -1, "output": 1}}'),
        ("SPOOL_PRICES", '{"m": {"input": 1, "output": 1, "per": "token"}}'),
        ("SPOOL_PRICES", "@/nonexistent/prices.json"),
        ("SPOOL_BUDGET_WAIT_SECONDS", "0"),
        ("SPOOL_TURN_RATE_LIMIT", "-1"),
        ("SPOOL_TURN_RATE_LIMIT", "many"),
        ("SPOOL_TENANT_MAX_RUNNING_TURNS", "-1"),
        ("SPOOL_STEP_MAX_TRIES", "0"),
        ("SPOOL_STEP_MAX_TRIES", "101"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, raw: str) -> None:
    # a valid value everywhere else, so the one bad variable is the only possible culprit
    env = {"SPOOL_DATABASE_URL": PG, "SPOOL_REDIS_URL": "redis://r:6379/0",
           "SPOOL_ADMIN_TOKEN": "a-good-admin-token-123", "SPOOL_PORT": "8000"}
    env[variable] = raw
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    error = caught.value
    assert error.variable == variable
    assert variable in str(error)
    assert isinstance(error, ValueError)
    # the message says what is wrong, not just where
    assert len(str(error)) > len(variable) + 10


def test_the_first_variable_in_error_is_reported_even_with_several_bad_ones() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SPOOL_LOG_LEVEL": "loud", "SPOOL_PORT": "abc"})
    assert caught.value.variable in {"SPOOL_LOG_LEVEL", "SPOOL_PORT"}
    assert caught.value.variable in str(caught.value)


def test_a_parse_error_quotes_the_bad_value() -> None:
    with pytest.raises(SettingsError, match=r"SPOOL_PORT: .*'abc'"):
        Settings.from_env({"SPOOL_PORT": "abc"})
    with pytest.raises(SettingsError, match=r"SPOOL_PORT: must be between 0 and 65535 .*70000"):
        Settings.from_env({"SPOOL_PORT": "70000"})


def test_prices_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"local-llm": {"input": 0.1, "output": 0.2, "cache_read": 0.01}}')
    settings = Settings.from_env({"SPOOL_PRICES": f"@{path}"})
    assert settings.prices == (("local-llm", ModelPrice(0.1, 0.2, 0.01)),)
