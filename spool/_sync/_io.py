"""The sync flavour's waiting primitives (hand-written; spool/_async/_io.py is the async one)."""

from __future__ import annotations

import threading
import time


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class Wake:
    """A wait that ``set()`` (a stream's close, from another thread) cuts short."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)
