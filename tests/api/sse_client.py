"""A small SSE reader for tests: frames over a real socket, parsed as the spec says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    id: str | None
    event: str | None
    data: str | None
    comment: str | None = None
    retry: int | None = None

    @property
    def envelope(self) -> dict[str, Any]:
        assert self.data is not None
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    fields: dict[str, list[str]] = {}
    comment = None
    async for line in response.aiter_lines():
        if line == "":
            if fields or comment is not None:
                yield Frame(
                    id=fields.get("id", [None])[-1],
                    event=fields.get("event", [None])[-1],
                    data="\n".join(fields["data"]) if "data" in fields else None,
                    comment=comment,
                    retry=int(fields["retry"][-1]) if "retry" in fields else None,
                )
            fields, comment = {}, None
        elif line.startswith(":"):
            comment = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
