"""agentspool's user side: the `spool` command and the Python client SDK (httpx only)."""

from spool.client import (
    BudgetExceeded,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    SessionStream,
    SpoolClient,
    SpoolConnectionError,
    SpoolError,
    StreamEvent,
    StreamGapError,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "BudgetExceeded",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "SessionStream",
    "SpoolClient",
    "SpoolConnectionError",
    "SpoolError",
    "StreamEvent",
    "StreamGapError",
    "Unauthorized",
    "Unavailable",
]
