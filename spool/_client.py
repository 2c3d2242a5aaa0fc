"""The two clients: ``AsyncClient`` (written in spool/_async/) and ``Client`` (its sync copy,
generated into spool/_sync/ by scripts/generate_sdk.py). What they share without I/O is in
spool/_core.py (requests, retries, answers), spool/_streaming.py (a stream's cursor and
backoff), spool/_decode.py and spool/_models.py (the typed answers)."""

from spool._async._client import AsyncClient
from spool._async._paging import AsyncPager
from spool._async._stream import AsyncEventStream
from spool._sync._client import Client
from spool._sync._paging import Pager
from spool._sync._stream import EventStream

__all__ = ["AsyncClient", "AsyncEventStream", "AsyncPager", "Client", "EventStream", "Pager"]
