"""The one read-decide-append retry.

A change is decided on the stream as read and appended with ``expected_seq`` (the version it
was read at), so two requests racing on one stream cannot both decide on the same state: the
store refuses the loser with ``StreamMoved`` and the loser reads again and decides again.
Any other error (a conflict of the request itself, a missing stream) is the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.errors import StreamMoved

ATTEMPTS = 8  # a change retried when its stream moved under it
T = TypeVar("T")


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run a read-decide-append ``attempt`` again while its append finds the stream moved, at
    most ``ATTEMPTS`` times; the last attempt's ``StreamMoved`` is raised."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await attempt()
        except StreamMoved:
            continue
    return await attempt()
