"""The retry hint both provider adapters read from a refused call's headers."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from engine.runtime.adapters.base import retry_after


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"Retry-After": "0"}, 0.0),
    ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
    ({}, None),
])
def test_seconds_or_milliseconds_the_provider_sent(headers: dict[str, str],
                                                   expected: float | None) -> None:
    assert retry_after(httpx.Headers(headers)) == expected


@pytest.mark.parametrize("value", ["-1", "-0.5", "nan", "inf", "-inf", "soon", "", "Mon, 99"])
def test_a_negative_or_unreadable_value_is_no_hint(value: str) -> None:
    assert retry_after(httpx.Headers({"Retry-After": value})) is None


@pytest.mark.parametrize("value", ["-1500", "nan", "x"])
def test_a_bad_milliseconds_header_leaves_the_word_to_retry_after(value: str) -> None:
    assert retry_after(httpx.Headers({"retry-after-ms": value, "Retry-After": "3"})) == 3.0
    assert retry_after(httpx.Headers({"retry-after-ms": value})) is None


@pytest.mark.parametrize("usegmt", [True, False])  # "GMT" or "-0000": both UTC
def test_an_http_date_is_the_time_left_until_it(usegmt: bool) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=usegmt)
    hint = retry_after(httpx.Headers({"Retry-After": when}))
    assert hint is not None and 25 <= hint <= 31


def test_an_http_date_passed_is_no_wait() -> None:
    when = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": when})) == 0.0
