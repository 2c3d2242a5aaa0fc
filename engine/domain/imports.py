"""Imports: an export (engine/domain/exports.py) written into a tenant, here or on another
server.

1. The whole file is checked before anything is written: the header first, every line a JSON
   object of a known kind, every event a session event type whose data has its type's shape,
   each session's seqs contiguous from 1 to its header's ``last_seq``, starting with
   ``session_created``, and its agent in the header. The first fault is ``Unprocessable``
   (422) naming the line and the field.
2. Ids are remapped by ``derived_id``: the session's, its agent's, and the turn, message and
   approval ids inside the events' data get new ids of the same prefix and time, derived from
   the old id and the target tenant; event ids likewise (``idempotent_uuid``). ``seq``,
   ``created_at`` and everything else in the data stay as they were; ``tool_use_id`` too (the
   model's own id, quoted back to it). ``meta`` is the import's (who imported, in which
   request) with the source event's id as ``causation_id``: the target's audit trail says who
   wrote its events, and a file cannot put words in another actor's mouth. Two imports of
   one file into one tenant so derive the same ids, and the store makes the second a retry
   that writes nothing.
3. Each session is written by one ``append_group`` (its events, and its agent's config when
   the tenant lacks it): whole or not at all. The agent is the derived id; it is created with
   the pinned config, or, if it exists, the version with exactly that config is pinned, or a
   new version with it is appended.

A session that is in the tenant already with the file's first k events (an earlier import of
a shorter export) gets the rest; one whose events differ (it was changed since) is a Conflict.
Sessions are written one after the other: a failure after the check (a conflict, an outage)
leaves the sessions before it imported whole, and running the import again finishes it.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine.domain.agents import VERSION_TYPES, check_config
from engine.domain.decide import retrying
from engine.domain.exports import FORMAT, ExportedAgent, SessionHeader, TenantHeader
from engine.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from engine.events import (
    AgentConfig,
    AgentCreated,
    AgentUpdated,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    EventMeta,
    MessageDelta,
    MessageStart,
    MessageStop,
    NewEvent,
    SessionArchived,
    SessionCreated,
    SessionDone,
    SessionInterrupted,
    SpendRecorded,
    ToolResult,
    ToolUse,
    TurnStarted,
    UserMessage,
    decode_data,
    encode,
    new_event,
)
from engine.ids import derived_id, idempotent_uuid, is_id
from engine.log.store import EventStore, GroupPart

SESSION_TYPES: frozenset[str] = frozenset(
    str(t.__struct_config__.tag) for t in (
        SessionCreated, UserMessage, SessionArchived, TurnStarted, MessageStart, MessageDelta,
        MessageStop, ToolUse, ToolResult, ApprovalRequested, ApprovalResolved,
        SessionInterrupted, SessionDone, SpendRecorded))
# Ids inside a session event's data that are the engine's own (``<prefix>_<ULID>``).
_REMAPPED_KEYS = ("turn_id", "message_id", "approval_id", "agent_id")


class SessionImported(msgspec.Struct, frozen=True):
    """One session of the file: its id there (``from``) and here, its events in the file, and
    how many of them this import wrote (0: all were here already)."""

    from_: str = msgspec.field(name="from")
    id: str
    events: int
    written: int


class ImportResult(msgspec.Struct, frozen=True):
    sessions: list[SessionImported]
    events: int  # in the file
    written: int  # by this import


@dataclass
class _Session:
    """A session of the file, checked: its header (at line ``line``) and its events."""

    header: SessionHeader
    line: int
    events: list[Event] = field(default_factory=list)


class Imports:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def import_sessions(self, tenant_id: str, body: bytes, *,
                              meta: EventMeta | None = None) -> tuple[ImportResult, int | None]:
        """Check the whole export, then write each session; returns what was done and the
        last position written (None: nothing was)."""
        sessions = parse(body)
        results: list[SessionImported] = []
        position: int | None = None
        for session in sessions:
            result, reached = await retrying(functools.partial(
                self._import, tenant_id, session, meta))
            results.append(result)
            position = reached or position
        return ImportResult(results, sum(r.events for r in results),
                            sum(r.written for r in results)), position

    async def _import(self, tenant_id: str, session: _Session,
                      meta: EventMeta | None) -> tuple[SessionImported, int | None]:
        session_id = derived_id(session.header.session_id, tenant_id)
        ids = [event_id(tenant_id, event) for event in session.events]
        done = await self._stored_prefix(tenant_id, session_id, ids)
        result = SessionImported(session.header.session_id, session_id, len(ids), 0)
        if done == len(ids):
            return result, None
        parts: list[GroupPart] = []
        version = None
        if done == 0 and session.header.agent is not None:  # session_created is to be written
            agent_part, version = await self._agent(tenant_id, session.header.agent, meta)
            parts += [agent_part] if agent_part is not None else []
        tail = session.events[done:]
        events = [remapped(event, tenant_id, version, event_id=ids[done + n], meta=meta)
                  for n, event in enumerate(tail)]
        parts.append(GroupPart(session_id, "session", events, [e.created_at for e in tail],
                               expected_seq=done))
        outcomes = await self._store.append_group(parts, tenant_id=tenant_id)
        written = outcomes[-1].events if outcomes[-1].written else []
        reached = max((e.position for o in outcomes if o.written for e in o.events), default=None)
        return msgspec.structs.replace(result, written=len(written)), reached

    async def _stored_prefix(self, tenant_id: str, session_id: str,
                             ids: list[uuid.UUID]) -> int:
        """How many of the file's events the tenant's session holds already (0: none, or no
        such session); Conflict if it holds others."""
        try:
            stored = await self._store.stream_version(session_id, tenant_id=tenant_id)
        except NotFound:
            return 0
        done = min(stored, len(ids))
        if done == 0:  # a stream of that id without events cannot be: be safe anyway
            return 0
        last = await self._store.read_events_at([(session_id, done)], tenant_id=tenant_id)
        if not last or last[0].id != ids[done - 1]:
            raise Conflict(f"session {session_id!r} of this tenant holds other events than "
                           "the file's (it changed after an earlier import)",
                           details={"session_id": session_id})
        return done

    async def _agent(self, tenant_id: str, agent: ExportedAgent,
                     meta: EventMeta | None) -> tuple[GroupPart | None, int]:
        """The agent's part of the group (None: the tenant has the config already) and the
        version the session pins."""
        agent_id = derived_id(agent.id, tenant_id)
        wanted = encode(agent.config)
        event = idempotent_uuid("import.agent", tenant_id, agent_id,
                                hashlib.sha256(wanted).hexdigest())
        now = [datetime.now(UTC)]
        try:
            versions = await self._store.read_stream_types(agent_id, VERSION_TYPES,
                                                           tenant_id=tenant_id)
        except NotFound:
            created = new_event(AgentCreated(config=agent.config), id=event, meta=meta)
            return GroupPart(agent_id, "agent", [created], now, expected_seq=0), 1
        for number, stored in enumerate(versions, 1):
            if encode(_config_of(stored)) == wanted:
                return None, number
        seq = await self._store.stream_version(agent_id, tenant_id=tenant_id)
        updated = new_event(AgentUpdated(version=len(versions) + 1, config=agent.config),
                            id=event, meta=meta)
        return GroupPart(agent_id, "agent", [updated], now, expected_seq=seq), len(versions) + 1


def event_id(tenant_id: str, event: Event) -> uuid.UUID:
    """The id an imported event gets in ``tenant_id``."""
    return idempotent_uuid("import", tenant_id, str(event.id))


def _config_of(event: Event) -> AgentConfig | None:
    try:
        data = decode_data(event)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return data.config if isinstance(data, AgentCreated | AgentUpdated) else None


# --- remapping (pure) ------------------------------------------------------------------------

_json = msgspec.json.Decoder(float_hook=decimal.Decimal)  # numbers as they were written
_json_out = msgspec.json.Encoder(decimal_format="number")


def remapped(event: Event, tenant_id: str, agent_version: int | None, *,
             event_id: uuid.UUID, meta: EventMeta | None = None) -> NewEvent:
    """The event as it is written into ``tenant_id``: its engine ids derived anew, and the
    import's ``meta`` caused by the source event."""
    data: dict[str, Any] = _json.decode(event.data)
    for key in _REMAPPED_KEYS:
        if isinstance(data.get(key), str):
            data[key] = derived_id(data[key], tenant_id)
    if event.type == "session_created":
        data["tenant_id"] = tenant_id
        if data.get("agent_id") is not None:
            data["agent_version"] = agent_version
    caused = msgspec.structs.replace(meta or EventMeta(), causation_id=str(event.id))
    return NewEvent(type=event.type, data=_json_out.encode(data), id=event_id,
                    meta=encode(caused))


# --- checking the whole file (pure) ----------------------------------------------------------


class _Kind(msgspec.Struct):
    kind: str | None = None


_kind = msgspec.json.Decoder(_Kind)
_header = msgspec.json.Decoder(SessionHeader | TenantHeader)
_event = msgspec.json.Decoder(Event)
_meta = msgspec.json.Decoder(EventMeta)
_PATH = re.compile(r" - at `(?:key` in `)?\$(.*)`$")
_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def corrupt(line: int, field: str, message: str) -> Unprocessable:
    return Unprocessable(f"line {line}: {message}", details={"line": line, "field": field})


def parse(body: bytes) -> list[_Session]:
    """The sessions of an export, every line checked; ``Unprocessable`` at the first fault."""
    sessions: list[_Session] = []
    seen: set[str] = set()
    current: _Session | None = None
    last = 0  # the last line that is not blank
    for number, raw in enumerate(body.split(b"\n"), 1):
        if not raw.strip():
            continue
        last = number
        kind = _kind_of(number, raw)
        if not sessions and current is None and kind not in ("session", "tenant"):
            raise corrupt(number, "kind", 'the first line must be a header ({"kind": '
                          '"session", ...} or {"kind": "tenant", ...}), as an export starts')
        if kind == "tenant":
            if number != _first_line(body):
                raise corrupt(number, "kind", "a tenant header is only the first line")
            _decode_header(number, raw)
        elif kind == "session":
            _finish(current, number)
            current = _start(number, raw, seen)
            sessions.append(current)
        elif kind is None:
            if current is None:
                raise corrupt(number, "kind", "an event before its session's header")
            current.events.append(_checked_event(number, raw, current))
        else:
            raise corrupt(number, "kind", f"unknown kind {kind!r} (session, tenant, or none "
                          "for an event)")
    if last == 0:
        raise corrupt(1, "body", "the file is empty (an export starts with a header line)")
    _finish(current, last + 1)
    return sessions


def _first_line(body: bytes) -> int:
    for number, raw in enumerate(body.split(b"\n"), 1):
        if raw.strip():
            return number
    return 1


def _kind_of(number: int, raw: bytes) -> str | None:
    try:
        return _kind.decode(raw).kind
    except msgspec.ValidationError as exc:
        raise corrupt(number, _field(exc, ""), f"not an export line: {_message(exc)}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise corrupt(number, "line", f"not a JSON object: {exc}") from exc
    except RecursionError as exc:
        raise corrupt(number, "line", "nested too deep") from exc


def _decode_header(number: int, raw: bytes) -> SessionHeader | TenantHeader:
    try:
        header = _header.decode(raw)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise corrupt(number, _field(exc, ""), _message(exc)) from exc
    if header.format != FORMAT:
        raise corrupt(number, "format", f"format {header.format} is not one this server "
                      f"reads ({FORMAT})")
    return header


def _start(number: int, raw: bytes, seen: set[str]) -> _Session:
    header = _decode_header(number, raw)
    assert isinstance(header, SessionHeader)
    if not is_id(header.session_id, "ses"):
        raise corrupt(number, "session_id", "must be a session id (ses_...)")
    if header.session_id in seen:
        raise corrupt(number, "session_id", f"session {header.session_id} is in the file twice")
    seen.add(header.session_id)
    if header.agent is not None:
        if not is_id(header.agent.id, "agt"):
            raise corrupt(number, "agent.id", "must be an agent id (agt_...)")
        try:
            check_config(header.agent.config)
        except InvalidRequest as exc:
            raise corrupt(number, f"agent.config.{exc.field or ''}".rstrip("."),
                          exc.message) from exc
    return _Session(header, number)


def _finish(session: _Session | None, number: int) -> None:
    """A session ends (at line ``number``, the next header or the end): all its events read."""
    if session is None:
        return
    if len(session.events) != session.header.last_seq or not session.events:
        raise corrupt(number, "seq", f"session {session.header.session_id} has "
                      f"{len(session.events)} events but its header (line {session.line}) "
                      f"says last_seq {session.header.last_seq}: the file is cut short?")


def _checked_event(number: int, raw: bytes, session: _Session) -> Event:
    try:
        event = _event.decode(raw)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise corrupt(number, _field(exc, ""), _message(exc)) from exc
    header, expected = session.header, len(session.events) + 1
    if event.stream_id != header.session_id or event.stream_type != "session":
        raise corrupt(number, "stream_id", f"an event of {event.stream_id!r} in session "
                      f"{header.session_id}'s part of the file")
    if event.seq != expected:
        raise corrupt(number, "seq", f"seq {event.seq} where {expected} must be (seqs of a "
                      "session are contiguous from 1)")
    if event.type not in SESSION_TYPES:
        raise corrupt(number, "type", f"{event.type!r} is no session event type")
    if (expected == 1) != (event.type == "session_created"):
        raise corrupt(number, "type", "a session's first event, and only it, is session_created")
    _check_data(number, event, session)
    try:
        _meta.decode(event.meta)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise corrupt(number, _field(exc, "meta"), _message(exc)) from exc
    return event


def _check_data(number: int, event: Event, session: _Session) -> None:
    try:
        data = decode_data(event)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise corrupt(number, _field(exc, "data"), _message(exc)) from exc
    tag = type(data).__struct_config__.tag
    if tag != event.type:
        raise corrupt(number, "data.type", f"data of type {tag!r} in a {event.type} event")
    agent = session.header.agent
    if isinstance(data, SessionCreated) and data.agent_id is not None and (
            agent is None or (agent.id, agent.version) != (data.agent_id, data.agent_version)):
        raise corrupt(number, "data.agent_id", "the session's agent and version must be the "
                      f"ones its header (line {session.line}) carries with their config")


def _field(exc: Exception, prefix: str) -> str:
    """msgspec's '... - at `$.data.turn_id`' (or 'missing required field `seq`') as a path."""
    text = str(exc)
    match = _PATH.search(text)
    path = match[1].lstrip(".") if match else ""
    named = _NAMED.search(text[: match.start()] if match else text)
    if named is not None:
        path = f"{path}.{named[1]}" if path else named[1]
    path = f"{prefix}.{path}" if prefix and path else (prefix or path)
    return path or "line"


def _message(exc: Exception) -> str:
    text = str(exc)
    match = _PATH.search(text)
    return text[: match.start()] if match else text
