"""agentspool's user side: the `spool` command and the Python client SDK (httpx only).

The SDK is laid out as httpx is: ``spool/client.py`` (the client), ``spool/_exceptions.py`` (the
error tree), ``spool/_sse.py`` (the event-stream parser); the public names are here."""

from spool._exceptions import (
    BudgetExceeded,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    SpoolConnectionError,
    SpoolError,
    StreamGapError,
    Unauthorized,
    Unavailable,
)
from spool.client import SessionStream, SpoolClient, StreamEvent

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
