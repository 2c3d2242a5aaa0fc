# Generated from spool/_async/_resources/_base.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""What every resource class holds: the client's sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spool._sync._sender import Sender


class Resource:
    def __init__(self, sender: Sender) -> None:
        self._sender = sender


def fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """A body of the keyword arguments given (None: left out, the server's default applies)."""
    return {name: value for name, value in given.items() if value is not None}
