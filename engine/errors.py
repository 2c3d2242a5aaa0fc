"""The one exception tree of agentspool.

Every error the engine raises is a ``SpoolError``; lower-level errors (asyncpg, redis, OS) are
translated at the boundary with ``raise ... from exc`` so callers never catch a driver's error.
The HTTP layer maps each class to a status code in exactly one place (``api/errors.py``).

    SpoolError                 internal_error
    ├── InvalidRequest         invalid_request   bad input, named by field path
    │   └── Unprocessable      invalid_request   422: well-formed, wrong content (an import line)
    ├── Unauthorized           unauthorized      missing or unknown credentials
    ├── Forbidden              forbidden         known credentials, not allowed
    ├── NotFound               not_found         unknown id, or another tenant's
    ├── Conflict               conflict          busy session, duplicate, archived
    │   ├── StreamMoved        conflict          expected_seq mismatch: read again, decide again
│   └── StreamClosed       conflict          the stream ended (session_archived): nothing follows
    ├── BudgetExceeded         budget_exceeded
    ├── RateLimited            rate_limited      carries retry_after
    └── Unavailable            unavailable       Postgres/Redis unreachable; carries retry_after
"""

from __future__ import annotations

from typing import Any


class SpoolError(Exception):
    type = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(SpoolError):
    type = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        if field is not None and details is None:
            details = {"field": field}
        super().__init__(message, details=details)
        self.field = field


class Unprocessable(InvalidRequest):
    """Well-formed input whose content is not what it must be (a corrupt line of an import):
    422, ``details`` naming where."""


class Unauthorized(SpoolError):
    type = "unauthorized"


class Forbidden(SpoolError):
    type = "forbidden"


class NotFound(SpoolError):
    type = "not_found"


class Conflict(SpoolError):
    type = "conflict"


class StreamMoved(Conflict):
    """An append's ``expected_seq`` is not the stream's version: the stream moved since the
    caller read it. Raised by the store only (nothing of the append is written); details
    ``expected_seq`` and ``actual_seq``. A caller that decided on what it read decides again
    (``engine/domain/decide.py``)."""


class StreamClosed(Conflict):
    """An append with ``closed_by`` to a stream whose last event is of that type (a terminal
    event such as ``session_archived``): decided in the write transaction, so nothing can ever
    follow such an event. Raised by the store only, with nothing of the append written;
    details ``last_seq``."""


class BudgetExceeded(SpoolError):
    type = "budget_exceeded"


class _Retryable(SpoolError):
    def __init__(self, message: str, *, retry_after: int = 1, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class RateLimited(_Retryable):
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, retry_after=retry_after, details=details)
        self.headers = headers or {}  # X-RateLimit-*


class Unavailable(_Retryable):
    type = "unavailable"
