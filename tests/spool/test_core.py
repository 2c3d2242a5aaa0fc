"""spool/_core.py, without a server (it does no I/O): the settings from the environment, how a
call becomes a request (its path, query and ``Idempotency-Key``), and which failed attempts are
sent again, after how long."""

from __future__ import annotations

import httpx
import pytest

from spool import _core
from spool._exceptions import SpoolError, error_from_response
from spool._operations import OPERATIONS


def settings() -> _core.Settings:
    return _core.Settings.of("http://spool.test/", "spk_x", "ten_1", 5.0, 2)


def test_settings_come_from_the_environment_when_not_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOOL_BASE_URL", "http://env.test:1/")
    monkeypatch.setenv("SPOOL_API_KEY", "spk_env")
    got = _core.Settings.of(None, None, None, 1.0, 0)
    assert (got.base_url, got.api_key) == ("http://env.test:1", "spk_env")
    assert _core.Settings.of("http://given", "spk_given", None, 1.0, 0).api_key == "spk_given"
    with pytest.raises(ValueError, match="max_retries"):
        _core.Settings.of(None, None, None, 1.0, -1)


def test_a_call_quotes_its_path_drops_empty_query_values_and_sends_the_tenant() -> None:
    call = _core.call(settings(), "list_tokens", "agt/1 x",
                      params={"limit": 5, "after": None, "types": ["a", "b"], "on": True})
    assert call.url == "http://spool.test/v1/agents/agt%2F1%20x/tokens"
    assert call.params == {"limit": "5", "types": "a,b", "on": "true"}
    assert call.headers["Authorization"] == "Bearer spk_x"
    assert call.headers["Spool-Tenant"] == "ten_1"
    with pytest.raises(ValueError, match="agent_id"):
        _core.call(settings(), "get_agent", "")
    with pytest.raises(TypeError):
        _core.call(settings(), "get_agent")


def test_only_operations_that_take_a_key_get_one_the_same_for_every_retry() -> None:
    submit = _core.call(settings(), "submit_message", "ses_1", json={"content": "x"})
    key = submit.headers["Idempotency-Key"]
    assert key.startswith("spool-") and len(key) > 20
    request = submit.request(httpx.Client())
    assert request.headers["idempotency-key"] == key  # built again for each attempt: same key
    assert _core.call(settings(), "submit_message", "ses_1").headers["Idempotency-Key"] != key
    given = _core.call(settings(), "submit_message", "ses_1", idempotency_key="mine")
    assert given.headers["Idempotency-Key"] == "mine"
    assert "Idempotency-Key" not in _core.call(settings(), "create_tenant").headers


def _response(status: int, retry_after: str | None = None) -> tuple[httpx.Response, SpoolError]:
    headers = {"Retry-After": retry_after} if retry_after else {}
    response = httpx.Response(status, headers=headers, json={"error": {"type": "x",
                                                                      "message": "m"}})
    return response, error_from_response(response)


def test_what_is_sent_again() -> None:
    read, write, keyed = (OPERATIONS[name] for name in
                          ("get_session", "create_tenant", "submit_message"))
    lost = httpx.ReadError("lost")
    refused = httpx.ConnectError("refused")
    assert _core.retry_after_error(write, 0, 2, lost) is None  # it may have been done
    assert _core.retry_after_error(write, 0, 2, refused) is not None  # it never left
    assert _core.retry_after_error(keyed, 0, 2, lost) is not None
    assert _core.retry_after_error(read, 0, 2, lost) is not None
    assert _core.retry_after_error(read, 2, 2, lost) is None  # the retries are used up
    for status in (429, 503):  # nothing was done: anything goes again
        assert _core.retry_after_status(write, 0, 2, *_response(status)) is not None
    for status in (500, 502, 504):  # maybe done: only what can be resent
        assert _core.retry_after_status(write, 0, 2, *_response(status)) is None
        assert _core.retry_after_status(keyed, 0, 2, *_response(status)) is not None
    for status in (400, 404, 409, 501):
        assert _core.retry_after_status(keyed, 0, 2, *_response(status)) is None


def test_the_wait_doubles_is_capped_and_honours_retry_after() -> None:
    waits = [_core.backoff(attempt) for attempt in range(8)]
    for attempt, wait in enumerate(waits):
        base = min(_core.RETRY_CAP, _core.RETRY_BASE * 2**attempt)
        assert base <= wait <= base * 1.25
    keyed = OPERATIONS["submit_message"]
    assert _core.retry_after_status(keyed, 0, 2, *_response(503, "7")) == 7
    assert _core.retry_after_status(keyed, 0, 2, *_response(503, "3600")) is None  # too long
