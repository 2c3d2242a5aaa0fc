# Generated from spool/_async/_sender.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Sends the calls ``spool/_core.py`` builds: retries, typed answers, pages, NDJSON lines and
the registry of open streams (closed with the client)."""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx

from spool import _core
from spool._sync._io import sleep
from spool._sync._paging import Pager, PageOf
from spool._core import Call, Settings
from spool._exceptions import ProtocolError, SpoolConnectionError, error_from_response

T = TypeVar("T")
log = logging.getLogger("spool.request")


class Sender:
    """One client's connection pool and settings (the ``http_client`` given is used as is and
    left open: its owner closes it)."""

    def __init__(self, settings: Settings, http_client: httpx.Client | None) -> None:
        self.settings = settings
        self.owns_http = http_client is None
        self.http = http_client or httpx.Client(timeout=settings.timeout)
        self.streams: weakref.WeakSet[Any] = weakref.WeakSet()

    def call(self, operation_id: str, *path: str, **kwargs: Any) -> Call:
        return _core.call(self.settings, operation_id, *path, **kwargs)

    def send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """The 2xx answer to ``call``, after up to ``max_retries`` retries of what can be sent
        again (spool/_core.py says what); an error answer raises its ``SpoolError``."""
        attempt = 0
        while True:
            delay, failure = self._attempt(call, attempt, stream)
            if isinstance(failure, httpx.Response):
                return failure
            log.info("spool.request.retry operation=%s attempt=%d in=%.3fs after=%r",
                     call.operation.operation_id, attempt + 1, delay, failure)
            sleep(delay)
            attempt += 1

    def _attempt(self, call: Call, attempt: int,
                 stream: bool) -> tuple[float, httpx.Response | Exception]:
        limit = self.settings.max_retries
        try:
            response = self.http.send(call.request(self.http), stream=stream)
        except httpx.TransportError as exc:
            delay = _core.retry_after_error(call.operation, attempt, limit, exc)
            if delay is None:
                raise SpoolConnectionError(
                    f"{call.operation.method} {call.url}: {exc!r}") from exc
            return delay, exc
        except httpx.HTTPError as exc:
            raise ProtocolError(f"{call.operation.method} {call.url}: {exc!r}") from exc
        if response.is_success:
            return 0.0, response
        response.read()
        response.close()
        error = error_from_response(response)
        status_delay = _core.retry_after_status(call.operation, attempt, limit, response, error)
        if status_delay is None:
            raise error
        return status_delay, error

    def model(self, call: Call, cls: type[T]) -> T:
        return _core.answer(self.send(call), cls)

    def json(self, call: Call) -> Any:
        return _core.json_of(self.send(call))

    def pager(self, call: Call, page: type[PageOf[T]]) -> Pager[T]:
        return Pager(self, call, page)

    def lines(self, call: Call) -> Iterator[dict[str, Any]]:
        """An NDJSON answer, one decoded object per line, read as it streams."""
        response = self.send(call, stream=True)
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield _object(line, call)
        finally:
            response.close()

    def close(self) -> None:
        for stream in list(self.streams):
            stream.close()
        if self.owns_http:
            self.http.close()


def _object(line: str, call: Call) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"{call.url}: a line is not JSON") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"{call.url}: a line is not a JSON object")
    return value


def with_params(call: Call, **params: Any) -> Call:
    return dataclasses.replace(call, params={**call.params, **_core.query(params)})
