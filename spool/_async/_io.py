"""The async flavour's waiting primitives (hand-written; spool/_sync/_io.py is the sync one)."""

from __future__ import annotations

import asyncio


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Wake:
    """A wait that ``set()`` (a stream's close, from another task) cuts short."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            pass
