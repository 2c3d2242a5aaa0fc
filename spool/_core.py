"""What the sync and async clients share, without any I/O (sans-IO): the settings, how a call
becomes a request, when a failed attempt is sent again and after how long, and how an answer
becomes a typed result or an error. ``spool/_async/_client.py`` (and its generated sync copy)
only send what this builds."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from spool._decode import decode
from spool._exceptions import ProtocolError, SpoolError, error_from_response
from spool._operations import OPERATIONS, Operation

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8700"
USER_AGENT = "agentspool-python"
# Answers that say the request was not done (429, 503) or may not have been (another 5xx).
_NOT_DONE = frozenset({429, 503})
_MAYBE_DONE = frozenset({500, 502, 504})
# Connection errors raised before a byte of the request was sent: it never reached the server.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_BASE = 0.5  # seconds before the first retry; doubles per attempt
RETRY_CAP = 8.0
RETRY_AFTER_CAP = 60.0  # a Retry-After longer than this is not waited for: the error is raised


@dataclass(frozen=True, slots=True)
class Settings:
    """A client's settings; ``base_url`` and ``api_key`` default to ``SPOOL_BASE_URL`` and
    ``SPOOL_API_KEY``."""

    base_url: str
    api_key: str | None
    tenant: str | None = None
    timeout: float | httpx.Timeout = 30.0
    max_retries: int = 2

    @classmethod
    def of(cls, base_url: str | None, api_key: str | None, tenant: str | None,
           timeout: float | httpx.Timeout, max_retries: int) -> Settings:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        url = base_url or os.environ.get("SPOOL_BASE_URL") or DEFAULT_BASE_URL
        return cls(url.rstrip("/"), api_key or os.environ.get("SPOOL_API_KEY") or None,
                   tenant, timeout, max_retries)

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.tenant:
            headers["Spool-Tenant"] = self.tenant
        return headers


@dataclass(slots=True)
class Call:
    """One call of an operation, ready to send (and to send again: the same key each time)."""

    operation: Operation
    url: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        kwargs: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.content is not None:
            kwargs["content"] = self.content
        elif self.json is not None:
            kwargs["json"] = self.json
        return http.build_request(self.operation.method, self.url, **kwargs)


def call(settings: Settings, operation_id: str, *path: str, params: Mapping[str, Any] | None = None,
         json: Any = None, content: bytes | None = None, headers: Mapping[str, str] | None = None,
         idempotency_key: str | None = None) -> Call:
    """The call of ``operation_id`` with its path parameters in order, the query (None values
    left out) and the body. An operation that takes ``Idempotency-Key`` gets one generated
    here when the caller gave none, so every retry of this call carries the same."""
    operation = OPERATIONS[operation_id]
    all_headers = settings.headers()
    all_headers.update(headers or {})
    if operation.idempotency_key:
        all_headers["Idempotency-Key"] = idempotency_key or f"spool-{uuid.uuid4().hex}"
    return Call(operation, settings.base_url + _path(operation.path, path),
                query(params or {}), all_headers, json, content)


def _path(template: str, values: tuple[str, ...]) -> str:
    parts = template.split("{")
    if len(parts) - 1 != len(values):
        raise TypeError(f"{template} takes {len(parts) - 1} path parameters")
    out = parts[0]
    for value, part in zip(values, parts[1:], strict=True):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{part.partition('}')[0]} must be a non-empty string")
        out += quote(value, safe="") + part.partition("}")[2]
    return out


def query(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as the API reads them: None left out, booleans lower case, lists
    joined by commas."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            out[name] = ",".join(str(item) for item in value)
        else:
            out[name] = str(value)
    return out


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """The wait before retry number ``attempt`` + 1: ``RETRY_BASE * 2**attempt`` up to
    ``RETRY_CAP`` with up to 25 % jitter, and never less than the server's ``Retry-After``."""
    delay = min(RETRY_CAP, RETRY_BASE * 2.0 ** min(attempt, 30))
    delay *= 1 + 0.25 * random.random()
    return max(delay, retry_after or 0.0)


def retry_after_error(operation: Operation, attempt: int, max_retries: int,
                      error: httpx.TransportError) -> float | None:
    """The wait before sending ``operation`` again after ``error`` (None: do not). A request
    that never left is always sent again; one that may have arrived only when resendable."""
    if attempt >= max_retries:
        return None
    if isinstance(error, _NEVER_SENT) or operation.resendable:
        return backoff(attempt)
    return None


def retry_after_status(operation: Operation, attempt: int, max_retries: int,
                       response: httpx.Response, error: SpoolError) -> float | None:
    """The wait before sending ``operation`` again after the error ``response`` (None: do not):
    429 and 503 say nothing was done; another 5xx may have done it, so only a resendable
    operation goes again."""
    status = response.status_code
    if attempt >= max_retries:
        return None
    if status not in _NOT_DONE and not (status in _MAYBE_DONE and operation.resendable):
        return None
    if error.retry_after is not None and error.retry_after > RETRY_AFTER_CAP:
        return None
    return backoff(attempt, error.retry_after)


def position(response: httpx.Response) -> int | None:
    """The ``Spool-Position`` of a write's answer: the log position to pass as
    ``min_position`` to read it back."""
    value = response.headers.get("spool-position")
    return int(value) if value is not None and value.isdigit() else None


def check(response: httpx.Response) -> httpx.Response:
    """The response, or its ``SpoolError`` when it is not a 2xx (its body read already)."""
    if response.is_success:
        return response
    raise error_from_response(response)


def answer(response: httpx.Response, cls: type[T]) -> T:
    """A successful JSON answer as ``cls``, with ``position`` from its header when ``cls``
    has the field and the body does not (the models answered by writes)."""
    body = json_of(response)
    extra: dict[str, Any] = {}
    if "position" in getattr(cls, "__dataclass_fields__", {}) and (
            isinstance(body, dict) and "position" not in body):
        extra["position"] = position(response)
    return decode(cls, body, **extra)


def json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProtocolError(f"{response.request.url.path}: the answer is not JSON",
                            status=response.status_code,
                            request_id=response.headers.get("x-request-id")) from exc
