"""What every resource class holds: the client's sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spool._async._sender import AsyncSender


class AsyncResource:
    def __init__(self, sender: AsyncSender) -> None:
        self._sender = sender


def fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """A body of the keyword arguments given (None: left out, the server's default applies)."""
    return {name: value for name, value in given.items() if value is not None}
