"""Reading a session as an operator (``spool replay``): ``SessionReader`` finds a session by id
alone (the tenant comes from the ``streams`` row), reads its log a page at a time, and follows
it by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from engine.debug.state_view import SessionStateView, state_at
from engine.errors import NotFound
from engine.events import SESSION_ARCHIVED, AgentConfig, Event, SessionCreated, decode_data
from engine.infra.db import connection
from engine.log.store import EventStore

_PAGE = 1000


class SessionReader:
    """A session found by its id alone, for operators: ``spool replay`` has the database, not
    an API key, so the tenant comes from the session's ``streams`` row."""

    def __init__(self, pool: asyncpg.Pool, session_id: str, tenant_id: str) -> None:
        self.session_id = session_id
        self.tenant_id = tenant_id
        self._store = EventStore(pool)  # reads only: its appender is never started

    @classmethod
    async def open(cls, pool: asyncpg.Pool, session_id: str) -> SessionReader:
        """NotFound if no session has that id."""
        async with connection(pool, "finding a session") as conn:
            row = await conn.fetchrow(
                "SELECT tenant_id, stream_type FROM streams WHERE stream_id = $1", session_id)
        if row is None or row["stream_type"] != "session":
            raise NotFound(f"no session {session_id!r} in this database")
        return cls(pool, session_id, row["tenant_id"])

    async def events(self, *, after: int = 0, until: int | None = None) -> list[Event]:
        """Events with ``after`` < seq <= ``until`` (to the end when None)."""
        events: list[Event] = []
        while True:
            limit = _PAGE if until is None else min(_PAGE, until - after - len(events))
            if limit <= 0:
                return events
            page = await self._store.read_stream(self.session_id, tenant_id=self.tenant_id,
                                                 after=after + len(events), limit=limit)
            events.extend(page)
            if len(page) < limit:
                return events

    async def state_at(self, at: int | None) -> SessionStateView:
        return await state_at(self._store, self.tenant_id, self.session_id, at)

    async def agent_config(self, created: Event) -> AgentConfig | None:
        """The config of the agent version the session pinned (None: it has no agent)."""
        from engine.domain.agents import Agents

        data = decode_data(created)
        if not isinstance(data, SessionCreated) or data.agent_id is None:
            return None
        found = await Agents(self._store).version(self.tenant_id, data.agent_id,
                                                  data.agent_version, archived_too=True)
        return found.config

    async def follow(self, *, after: int, stop: asyncio.Event,
                     interval: float = 0.2) -> AsyncIterator[list[Event]]:
        """Batches of new events as they are appended (polled every ``interval`` seconds),
        until ``stop`` is set or the session is archived (nothing can follow that). An empty
        batch means nothing came in that interval."""
        while not stop.is_set():
            batch = await self.events(after=after)
            if batch:
                after = batch[-1].seq
            yield batch
            if batch and batch[-1].type == SESSION_ARCHIVED:
                return
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
