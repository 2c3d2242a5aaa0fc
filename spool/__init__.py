"""agentspool's user side: the `spool` command and the Python client SDK (httpx only).

    with spool.Client(base_url="http://127.0.0.1:8700", api_key="spk_...") as client:
        session = client.sessions.create(agent_id=agent_id)
        for event in client.sessions.send(session.id, "hello"):
            print(event.seq, event.type, event.data)

The SDK is laid out as httpx is: ``spool/_client.py`` (the clients), ``spool/_exceptions.py``
(the error tree), ``spool/_models.py`` (the typed answers); the public names are here."""

from importlib import metadata as _metadata

from spool import _exceptions, _models
from spool._client import AsyncClient, AsyncEventStream, AsyncPager, Client, EventStream, Pager

# The error names and the model names are listed once, in their modules.
from spool._exceptions import *  # noqa: F403
from spool._models import *  # noqa: F403
from spool._streaming import Reconnect

try:
    __version__ = _metadata.version("agentspool")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["AsyncClient", "AsyncEventStream", "AsyncPager", "Client", "EventStream", "Pager",
           "Reconnect", "__version__"]
__all__ += _exceptions.__all__
__all__ += _models.__all__
