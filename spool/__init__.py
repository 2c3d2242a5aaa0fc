"""agentspool's user side: the `spool` command and the Python client SDK (httpx only).

The SDK is laid out as httpx is: ``spool/client.py`` (the client), ``spool/_exceptions.py`` (the
error tree), ``spool/_sse.py`` (the event-stream parser); the public names are here."""

# The error names are listed once, in spool/_exceptions.py.
from spool import _exceptions
from spool._exceptions import *  # noqa: F403
from spool.client import SessionStream, SpoolClient, StreamEvent

__all__ = ["SessionStream", "SpoolClient", "StreamEvent"]
__all__ += _exceptions.__all__
