"""Sessions: a session is a ``session`` stream whose id is the session id.

Until the runtime lands (turn execution, issue 5), ``submit_message`` records the turn as a
``user_message`` event; the session's state is folded from its stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from engine.agents import Agents
from engine.errors import Conflict, InvalidRequest, NotFound
from engine.events import (
    ContentBlock,
    Event,
    EventMeta,
    SessionArchived,
    SessionCreated,
    UserMessage,
    decode_data,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.pages import Page, check_limit, page_of
from engine.store import EventStore

SessionStatus = Literal["idle", "running", "requires_action", "archived"]


class Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


class Session(msgspec.Struct):
    id: str
    status: SessionStatus
    agent_id: str | None
    agent_version: int | None
    title: str | None
    metadata: dict[str, str]
    usage: Usage
    created_at: datetime
    updated_at: datetime
    last_seq: int


class Sessions:
    def __init__(self, store: EventStore, agents: Agents) -> None:
        self._store = store
        self._agents = agents

    async def create(
        self,
        tenant_id: str,
        *,
        agent_id: str | None = None,
        agent_version: int | None = None,
        title: str | None = None,
        metadata: dict[str, str] | None = None,
        meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Session, Event]:
        """A new session, pinned to ``agent_version`` of the agent (its current version if
        None). Without an agent the session runs the default: the scripted adapter's echo."""
        if agent_id is not None:
            agent_version = await self._pinned_version(tenant_id, agent_id, agent_version)
        elif agent_version is not None:
            raise InvalidRequest("agent_version needs an agent_id", field="agent_version")
        session_id = new_id("ses")
        data = SessionCreated(
            tenant_id=tenant_id, agent_id=agent_id, agent_version=agent_version, title=title,
            metadata=metadata or {},
        )
        event_id = derived_event_id(tenant_id, "sessions.create", idempotency_key)
        [event] = await self._store.append(
            session_id,
            [new_event(data, id=event_id, meta=meta)],
            tenant_id=tenant_id,
            stream_type="session",
            expected_seq=0,
        )
        return await self.get(tenant_id, event.stream_id), event

    async def _pinned_version(
        self, tenant_id: str, agent_id: str, version: int | None
    ) -> int:
        try:
            return (await self._agents.version(tenant_id, agent_id, version)).version
        except NotFound as exc:  # the same answer for unknown and foreign agents
            raise NotFound(exc.message, details={"field": "agent_id"}) from exc
        except Conflict as exc:
            raise Conflict(exc.message, details={"field": "agent_id"}) from exc

    async def get(self, tenant_id: str, session_id: str) -> Session:
        events = await self._all_events(tenant_id, session_id)
        return fold(events)

    async def submit_message(
        self,
        tenant_id: str,
        session_id: str,
        content: list[ContentBlock],
        *,
        meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        if await self._last_event_type(tenant_id, session_id) == _ARCHIVED:
            raise Conflict(f"session {session_id!r} is archived")
        data = UserMessage(turn_id=new_id("turn"), content=content)
        event_id = derived_event_id(tenant_id, f"sessions.{session_id}.messages", idempotency_key)
        [event] = await self._store.append(
            session_id,
            [new_event(data, id=event_id, meta=meta)],
            tenant_id=tenant_id,
            stream_type="session",
        )
        return event

    async def _last_event_type(self, tenant_id: str, session_id: str) -> str:
        """The type of the session's last event (archiving is terminal, so "archived" is
        always the last event). 404 if unknown."""
        _check_session_id(session_id)
        return (await self._store.last_event(session_id, tenant_id=tenant_id)).type

    async def events(
        self, tenant_id: str, session_id: str, *, after: int, limit: int
    ) -> Page[Event]:
        _check_session_id(session_id)
        if after < 0:
            raise InvalidRequest("after must be >= 0", field="after")
        events = await self._store.read_stream(
            session_id, tenant_id=tenant_id, after=after, limit=check_limit(limit) + 1
        )
        return page_of(events, limit, lambda event: str(event.seq))

    async def _all_events(self, tenant_id: str, session_id: str) -> list[Event]:
        _check_session_id(session_id)
        events: list[Event] = []
        while True:
            page = await self._store.read_stream(
                session_id, tenant_id=tenant_id, after=len(events), limit=1000
            )
            events.extend(page)
            if len(page) < 1000:
                return events


def fold(events: list[Event]) -> Session:
    """The session's state after ``events`` (its stream, from seq 1)."""
    first = decode_data(events[0])
    if not isinstance(first, SessionCreated):
        raise NotFound(f"stream {events[0].stream_id!r} is not a session")
    status: SessionStatus = "idle"
    for event in events[1:]:
        if event.type == SessionArchived.__struct_config__.tag:
            status = "archived"
    return Session(
        id=events[0].stream_id,
        status=status,
        agent_id=first.agent_id,
        agent_version=first.agent_version,
        title=first.title,
        metadata=first.metadata,
        usage=Usage(),
        created_at=events[0].created_at,
        updated_at=events[-1].created_at,
        last_seq=events[-1].seq,
    )


_ARCHIVED = SessionArchived.__struct_config__.tag


def _check_session_id(session_id: str) -> None:
    if not is_id(session_id, "ses"):
        raise NotFound(f"session {session_id!r} not found")
