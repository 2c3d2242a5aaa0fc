"""Exports: a session (or every session of a tenant) as NDJSON lines, read page by page.

The format (``format`` 1), one JSON object per line:

* a ``SessionHeader`` (``"kind": "session"``): the session's id, its last seq as of the
  export, and the config of the agent version it pinned, whole (so an import elsewhere can
  recreate the agent);
* then each of its events, seq 1 to ``last_seq``, as the ``Event`` envelope the API serves
  everywhere (stored JSON passed through).

A tenant's export starts with a ``TenantHeader`` (``"kind": "tenant"``) and then holds each
session as above, in session id order. Sessions only: boards, tasks and budgets are not part
of it (an agent comes along as the config its sessions pinned).

Memory is bounded by the page size (``SPOOL_EXPORT_PAGE_EVENTS``): session ids and events are
read a page at a time, and each page is encoded and handed on before the next is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

import msgspec

from engine.domain.agents import Agents
from engine.errors import NotFound
from engine.events import AgentConfig, SessionCreated, decode_data
from engine.ids import is_id
from engine.log.store import MAX_READ_LIMIT, EventStore

FORMAT = 1
NDJSON = "application/x-ndjson"


class ExportedAgent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The agent a session pinned: its id, the version, and that version's config whole."""

    id: str
    version: int
    config: AgentConfig


class SessionHeader(msgspec.Struct, tag_field="kind", tag="session", frozen=True):
    """The first line of a session's export; its events follow, seq 1 to ``last_seq``."""

    format: int
    session_id: str
    tenant_id: str
    last_seq: int
    exported_at: datetime
    agent: ExportedAgent | None = None


class TenantHeader(msgspec.Struct, tag_field="kind", tag="tenant", frozen=True):
    """The first line of a tenant's export: each of its sessions follows, header and events."""

    format: int
    tenant_id: str
    exported_at: datetime


Kind = Literal["session", "tenant"]
_encoder = msgspec.json.Encoder()


class Exports:
    def __init__(self, store: EventStore, agents: Agents, *, page_size: int = 1000) -> None:
        if not 1 <= page_size <= MAX_READ_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_READ_LIMIT}")
        self._store = store
        self._agents = agents
        self.page_size = page_size

    async def session(self, tenant_id: str, session_id: str) -> AsyncIterator[bytes]:
        """The session's export, as chunks of whole lines. Its header is read here, before
        the first chunk is asked for: an unknown or foreign session is NotFound at once."""
        header = await self._header(tenant_id, session_id)
        return self._lines(header)

    async def tenant(self, tenant_id: str) -> AsyncIterator[bytes]:
        """Every session of the tenant, as chunks of whole lines (``pages`` for the pages)."""
        header = TenantHeader(format=FORMAT, tenant_id=tenant_id, exported_at=_now())
        return self._tenant_lines(header)

    async def pages(self, tenant_id: str) -> AsyncIterator[list[bytes]]:
        """The tenant's export as the pages it is read in: lines of one session's header, or
        of at most ``page_size`` events."""
        async for ids in self._session_id_pages(tenant_id):
            for session_id in ids:
                try:
                    header = await self._header(tenant_id, session_id)
                except NotFound:  # a session stream without its first event: none of ours
                    continue
                yield [_line(header)]
                async for page in self._event_pages(header):
                    yield page

    async def _lines(self, header: SessionHeader) -> AsyncIterator[bytes]:
        yield _line(header)
        async for page in self._event_pages(header):
            yield b"".join(page)

    async def _tenant_lines(self, header: TenantHeader) -> AsyncIterator[bytes]:
        yield _line(header)
        async for page in self.pages(header.tenant_id):
            yield b"".join(page)

    async def _session_id_pages(self, tenant_id: str) -> AsyncIterator[list[str]]:
        after = ""
        while True:
            ids = await self._store.stream_ids(tenant_id, "session", after=after,
                                               limit=self.page_size)
            if ids:
                yield ids
            if len(ids) < self.page_size:
                return
            after = ids[-1]

    async def _event_pages(self, header: SessionHeader) -> AsyncIterator[list[bytes]]:
        """Events 1 to ``last_seq`` (later ones are not part of this export)."""
        after = 0
        while after < header.last_seq:
            events = await self._store.read_stream(
                header.session_id, tenant_id=header.tenant_id, after=after,
                limit=min(self.page_size, header.last_seq - after))
            if not events:
                return
            yield [_line(event) for event in events]
            after = events[-1].seq

    async def _header(self, tenant_id: str, session_id: str) -> SessionHeader:
        if not is_id(session_id, "ses"):
            raise NotFound(f"session {session_id!r} not found")
        [first] = await self._store.read_stream(session_id, tenant_id=tenant_id, limit=1)
        created = decode_data(first) if first.type == "session_created" else None
        if not isinstance(created, SessionCreated):
            raise NotFound(f"session {session_id!r} not found")
        last_seq = await self._store.stream_version(session_id, tenant_id=tenant_id)
        agent = None
        if created.agent_id is not None and created.agent_version is not None:
            pinned = await self._agents.version(tenant_id, created.agent_id,
                                                created.agent_version, archived_too=True)
            agent = ExportedAgent(created.agent_id, pinned.version, pinned.config)
        return SessionHeader(format=FORMAT, session_id=session_id, tenant_id=tenant_id,
                             last_seq=last_seq, exported_at=_now(), agent=agent)


def _line(value: object) -> bytes:
    return _encoder.encode(value) + b"\n"


def _now() -> datetime:
    return datetime.now(UTC)
