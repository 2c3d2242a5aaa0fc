"""Sessions: a session is a ``session`` stream whose id is the session id.

A session with an agent runs turns: ``submit_message`` appends a ``user_message`` and a worker
(engine/runtime) runs the turn. While a turn runs (or waits to), another message is a Conflict
unless ``mode`` says what to do: ``enqueue`` (it runs after) or ``interrupt`` (the running turn
is stopped first, in the same append). A session without an agent only records messages.

Decisions are made on the folded log and appended with ``expected_seq``, so two requests racing
on one session cannot both see it idle: the loser re-reads and decides again
(engine/domain/decide.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Literal, NamedTuple

import msgspec

from engine.domain.agents import Agents
from engine.domain.budgets import Budgets
from engine.domain.decide import retrying
from engine.domain.session_state import SessionState, catch_up, fold
from engine.errors import Conflict, InvalidRequest, NotFound, StreamClosed, StreamMoved
from engine.events import (
    SESSION_ARCHIVED,
    ContentBlock,
    Event,
    EventMeta,
    NewEvent,
    SessionArchived,
    SessionCreated,
    SessionInterrupted,
    SessionStatus,
    ToolResult,
    Usage,
    UserMessage,
    decode_data,
    new_event,
)
from engine.ids import derived_event_id, is_id, new_id
from engine.infra.ratelimit import Allowance, RateLimiter
from engine.log.store import EventStore
from engine.pages import Page, check_limit, page_of

SubmitMode = Literal["enqueue", "interrupt"]
_AGENT_CACHE_MAX = 100_000
_STATE_CACHE_MAX = 1000  # folded sessions kept in memory


class Session(msgspec.Struct):
    id: str
    status: SessionStatus
    agent_id: str | None
    agent_version: int | None
    title: str | None
    metadata: dict[str, str]
    usage: Usage
    current_turn_id: str | None
    queued_turn_ids: list[str]
    pending_tool_use_ids: list[str]  # client tools waiting for POST .../tool_results
    created_at: datetime
    updated_at: datetime
    last_seq: int


class Sessions:
    def __init__(self, store: EventStore, agents: Agents,
                 budgets: Budgets | None = None, rate_limiter: RateLimiter | None = None) -> None:
        self._store = store
        self._agents = agents
        self._budgets = budgets
        self._rate_limiter = rate_limiter  # counts submitted messages per tenant
        # (tenant, session) -> agent id or None: fixed at creation, so safe to remember.
        self._agent_of: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._states: OrderedDict[tuple[str, str], SessionState] = OrderedDict()

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
        None). Without an agent the session only records messages."""
        if agent_id is not None:
            agent_version = await self._pinned_version(tenant_id, agent_id, agent_version)
        elif agent_version is not None:
            raise InvalidRequest("agent_version needs an agent_id", field="agent_version")
        data = SessionCreated(
            tenant_id=tenant_id, agent_id=agent_id, agent_version=agent_version, title=title,
            metadata=metadata or {},
        )
        event_id = derived_event_id(tenant_id, "sessions.create", idempotency_key)
        [event] = await self._store.append(
            new_id("ses"), [new_event(data, id=event_id, meta=meta)], tenant_id=tenant_id,
            stream_type="session", expected_seq=0,
        )
        return await self.get(tenant_id, event.stream_id), event

    async def _pinned_version(self, tenant_id: str, agent_id: str, version: int | None) -> int:
        try:
            return (await self._agents.version(tenant_id, agent_id, version)).version
        except NotFound as exc:  # the same answer for unknown and foreign agents
            raise NotFound(exc.message, details={"field": "agent_id"}) from exc
        except Conflict as exc:
            raise Conflict(exc.message, details={"field": "agent_id"}) from exc

    async def get(self, tenant_id: str, session_id: str) -> Session:
        return _session(await self.state(tenant_id, session_id))

    async def state(self, tenant_id: str, session_id: str) -> SessionState:
        """The session folded to the end of its log. Recently used states are kept and only
        caught up (the events after them are read), not folded from scratch each time."""
        _check_session_id(session_id)
        key = (tenant_id, session_id)
        cached = self._states.get(key)
        if cached is not None:
            self._states.move_to_end(key)
            return await catch_up(self._store, tenant_id, session_id, cached)
        events = await self._store.read_whole_stream(session_id, tenant_id=tenant_id)
        if events[0].type != "session_created":
            raise NotFound(f"session {session_id!r} not found")
        state = fold(events)
        raced = self._states.get(key)  # another request folded it meanwhile: keep one copy
        if raced is not None:
            return await catch_up(self._store, tenant_id, session_id, raced)
        if len(self._states) >= _STATE_CACHE_MAX:
            self._states.popitem(last=False)
        self._states[key] = state
        return state

    async def submit_message(
        self,
        tenant_id: str,
        session_id: str,
        content: list[ContentBlock],
        *,
        mode: SubmitMode | None = None,
        meta: EventMeta | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Append a user message (a turn, if the session has an agent), counted against the
        tenant's rate limit (RateLimited past it). A retry with the same Idempotency-Key gets
        the first message back, whatever happened since, and is not counted again."""
        first = await self._replayed_message(tenant_id, session_id, idempotency_key)
        if first is not None:
            return Submitted(first, None)
        allowance = None
        if self._rate_limiter is not None:
            allowance = await self._rate_limiter.take(tenant_id)
        event = await self._append_message(tenant_id, session_id, content, mode=mode,
                                           meta=meta, idempotency_key=idempotency_key)
        return Submitted(event, allowance)

    async def _replayed_message(self, tenant_id: str, session_id: str,
                                idempotency_key: str | None) -> Event | None:
        """The message a request with this Idempotency-Key appended already, if any."""
        event_id = derived_event_id(tenant_id, f"sessions.{session_id}.messages", idempotency_key)
        if event_id is None:
            return None
        first = await self._store.event_by_id(event_id, tenant_id=tenant_id)
        return first if first is not None and first.stream_id == session_id else None

    async def _append_message(
        self, tenant_id: str, session_id: str, content: list[ContentBlock], *,
        mode: SubmitMode | None, meta: EventMeta | None, idempotency_key: str | None,
    ) -> Event:
        _check_session_id(session_id)
        event_id = derived_event_id(tenant_id, f"sessions.{session_id}.messages", idempotency_key)
        message = new_event(UserMessage(turn_id=new_id("turn"), content=content), id=event_id,
                            meta=meta)
        agent_id = await self._agent(tenant_id, session_id)
        if agent_id is None:
            return await self._record(tenant_id, session_id, message)
        if self._budgets is not None:  # a turn that would start over budget: BudgetExceeded
            await self._budgets.check(tenant_id, agent_id, session_id)
        appended = await self._decide(
            tenant_id, session_id, lambda state: [*_before_message(state, mode, meta), message])
        return appended[-1]

    async def stream_start(self, tenant_id: str, session_id: str, after: int) -> None:
        """Check that the session's stream can be read after seq ``after``, before it starts:
        NotFound for no such session; Conflict when it is archived and ``after`` is at or past
        its end (``session_archived``), as nothing will ever follow."""
        if not is_id(session_id, "ses"):
            raise NotFound(f"session {session_id!r} not found")
        last = await self._store.last_event(session_id, tenant_id=tenant_id)
        if last.type == SESSION_ARCHIVED and after >= last.seq:
            raise Conflict(
                f"session {session_id!r} is archived: its stream ended at seq {last.seq}",
                details={"field": "after", "last_seq": last.seq})

    async def submit_tool_results(
        self, tenant_id: str, session_id: str, results: list[ClientToolResult], *,
        meta: EventMeta | None = None, idempotency_key: str | None = None,
    ) -> list[Event]:
        """Answer client tool calls of the running turn; the turn resumes when all are in.
        An id the turn never asked for is an InvalidRequest; one already answered, or of a
        turn that ended (cancelled, say), is a Conflict and nothing is written."""
        _check_session_id(session_id)
        seen: set[str] = set()
        for index, result in enumerate(results):
            if result.tool_use_id in seen:
                raise InvalidRequest("a tool call is answered twice in one request",
                                     field=f"results[{index}].tool_use_id")
            seen.add(result.tool_use_id)
        ids = [derived_event_id(tenant_id, f"sessions.{session_id}.tool_results.{r.tool_use_id}",
                                idempotency_key) for r in results]
        if ids[0] is not None:
            firsts = [await self._store.event_by_id(i, tenant_id=tenant_id) for i in ids if i]
            if all(first is not None for first in firsts):
                return [first for first in firsts if first is not None]
        return await self._decide(tenant_id, session_id, lambda state: [
            new_event(_checked_result(state, index, result), id=event_id, meta=meta)
            for index, (result, event_id) in enumerate(zip(results, ids, strict=True))])

    async def interrupt(
        self, tenant_id: str, session_id: str, *, meta: EventMeta | None = None,
    ) -> Event | None:
        """Stop the running turn (it ends ``cancelled``); None if no turn is running."""

        def decide(state: SessionState) -> list[NewEvent]:
            if state.current is None or state.current.interrupted:
                return []
            return [new_event(SessionInterrupted(turn_id=state.current.turn_id), meta=meta)]

        appended = await self._decide(tenant_id, session_id, decide)
        return appended[0] if appended else None

    async def cancel_turns(
        self, tenant_id: str, session_id: str, reason: str, *, meta: EventMeta | None = None,
    ) -> list[Event]:
        """Interrupt the running turn and every queued one (each ends ``cancelled``, with
        ``reason`` as its error): what suspending the tenant does to its sessions."""

        def decide(state: SessionState) -> list[NewEvent]:
            turns = [*([state.current] if state.current is not None else []), *state.queue]
            return [new_event(SessionInterrupted(turn_id=turn.turn_id, reason=reason), meta=meta)
                    for turn in turns if not turn.interrupted]

        return await self._decide(tenant_id, session_id, decide)

    async def queue(self, tenant_id: str, session_id: str) -> list[QueuedTurn]:
        state = await self.state(tenant_id, session_id)
        return [QueuedTurn(turn.turn_id, turn.content) for turn in state.queue
                if not turn.interrupted]

    async def remove_queued(
        self, tenant_id: str, session_id: str, turn_id: str, *, meta: EventMeta | None = None,
    ) -> Event:
        """Take a turn out of the queue before it starts (it ends ``cancelled``)."""

        def decide(state: SessionState) -> list[NewEvent]:
            if state.current is not None and state.current.turn_id == turn_id:
                raise Conflict("that turn is running; interrupt it instead",
                               details={"field": "turn_id"})
            if not any(t.turn_id == turn_id and not t.interrupted for t in state.queue):
                raise NotFound(f"no queued turn {turn_id!r}")
            data = SessionInterrupted(turn_id=turn_id, reason="removed from the queue")
            return [new_event(data, meta=meta)]

        [event] = await self._decide(tenant_id, session_id, decide)
        return event

    async def archive(
        self, tenant_id: str, session_id: str, *, meta: EventMeta | None = None,
    ) -> tuple[Session, Event | None]:
        """Archive an idle session: no more messages, and its stream ends. A busy one is a
        Conflict (interrupt it first); an archived one is returned as it is."""

        def decide(state: SessionState) -> list[NewEvent]:
            if state.archived:
                return []
            if state.busy:
                raise Conflict("a turn is running or queued; interrupt it first",
                               details={"field": "session"})
            return [new_event(SessionArchived(), meta=meta)]

        appended = await self._decide(tenant_id, session_id, decide)
        return await self.get(tenant_id, session_id), appended[0] if appended else None

    async def decide(
        self, tenant_id: str, session_id: str,
        decide: Callable[[SessionState], list[NewEvent]],
    ) -> list[Event]:
        """Append what ``decide`` makes of the session's state the way every decision on a
        session is appended (``_decide``), for the services that decide about a session
        themselves (engine/domain/approvals.py)."""
        return await self._decide(tenant_id, session_id, decide)

    async def _decide(
        self, tenant_id: str, session_id: str,
        decide: Callable[[SessionState], list[NewEvent]],
    ) -> list[Event]:
        """Append what ``decide`` makes of the session's current state, with expected_seq; if
        the session moved meanwhile, decide again on the new state (a few times)."""

        async def attempt() -> list[Event]:
            state = await self.state(tenant_id, session_id)
            events = decide(state)
            if not events:
                return []
            return await self._append(tenant_id, session_id, events, state)

        try:
            return await retrying(attempt)
        except StreamMoved:
            raise Conflict("the session kept changing; retry",
                           details={"field": "session"}) from None

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

    async def _append(self, tenant_id: str, session_id: str, events: list[NewEvent],
                      state: SessionState) -> list[Event]:
        if state.archived:
            raise Conflict(f"session {session_id!r} is archived")
        return await self._store.append(session_id, events, tenant_id=tenant_id,
                                        stream_type="session", expected_seq=state.last_seq)

    async def _record(self, tenant_id: str, session_id: str, message: NewEvent) -> Event:
        """A message to a session without an agent: recorded, no turn. Archiving is terminal:
        the store refuses the append in its write transaction if the session is archived."""
        try:
            [event] = await self._store.append(session_id, [message], tenant_id=tenant_id,
                                               stream_type="session", closed_by=SESSION_ARCHIVED)
        except StreamClosed:
            raise Conflict(f"session {session_id!r} is archived") from None
        return event

    async def _agent(self, tenant_id: str, session_id: str) -> str | None:
        key = (tenant_id, session_id)
        if key in self._agent_of:
            return self._agent_of[key]
        [first] = await self._store.read_stream(session_id, tenant_id=tenant_id, limit=1)
        created = decode_data(first)
        if not isinstance(created, SessionCreated):
            raise NotFound(f"session {session_id!r} not found")
        if len(self._agent_of) >= _AGENT_CACHE_MAX:
            self._agent_of.popitem(last=False)
        self._agent_of[key] = created.agent_id
        return created.agent_id


def _before_message(
    state: SessionState, mode: SubmitMode | None, meta: EventMeta | None,
) -> list[NewEvent]:
    """What goes in front of a new message: nothing, or the interrupt of the running turn;
    a busy session without a mode is a Conflict."""
    if not state.busy or mode == "enqueue":
        return []
    if mode == "interrupt":
        if state.current is None or state.current.interrupted:
            return []
        data = SessionInterrupted(turn_id=state.current.turn_id, reason="a new message")
        return [new_event(data, meta=meta)]
    running = state.current.turn_id if state.current else state.queue[0].turn_id
    raise Conflict(
        "a turn is running; send mode=enqueue to run this one after it, or mode=interrupt to"
        " stop it first", details={"field": "mode", "turn_id": running},
    )


class Submitted(NamedTuple):
    """A submitted message, and what is left of the tenant's rate limit (None: no limit, or
    a retry answered with its first message, which is not counted)."""

    event: Event
    allowance: Allowance | None


class QueuedTurn(msgspec.Struct, frozen=True):
    turn_id: str
    content: list[ContentBlock]


class ClientToolResult(msgspec.Struct, frozen=True):
    tool_use_id: str
    content: list[ContentBlock]
    is_error: bool = False


def _checked_result(state: SessionState, index: int, result: ClientToolResult) -> ToolResult:
    field = f"results[{index}].tool_use_id"
    turn_id = state.tool_turns.get(result.tool_use_id)
    if turn_id is None:
        raise InvalidRequest(f"no tool call {result.tool_use_id!r} in this session",
                             field=field)
    if result.tool_use_id in state.answered:
        raise Conflict(f"tool call {result.tool_use_id!r} already has a result",
                       details={"field": field})
    current = state.current
    if current is None or current.turn_id != turn_id or current.interrupted:
        raise Conflict(f"the turn of tool call {result.tool_use_id!r} has ended",
                       details={"field": field, "turn_id": turn_id})
    if current.tool_uses[result.tool_use_id].executor != "client":
        raise InvalidRequest(f"tool call {result.tool_use_id!r} runs on the server",
                             field=field)
    return ToolResult(turn_id=turn_id, tool_use_id=result.tool_use_id, content=result.content,
                      is_error=result.is_error)


def _session(state: SessionState) -> Session:
    created = state.created
    current = state.current
    return Session(
        id=state.session_id, status=state.status, agent_id=created.agent_id,
        agent_version=created.agent_version, title=created.title, metadata=created.metadata,
        usage=state.usage, current_turn_id=current.turn_id if current else None,
        queued_turn_ids=[turn.turn_id for turn in state.queue],
        pending_tool_use_ids=[t.tool_use_id for t in current.waiting_on_client] if current
        else [],
        created_at=state.created_at, updated_at=state.updated_at, last_seq=state.last_seq,
    )


def _check_session_id(session_id: str) -> None:
    if not is_id(session_id, "ses"):
        raise NotFound(f"session {session_id!r} not found")
