# Generated from spool/_async/_resources/sessions.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Sessions: create, list, get, the state at any event, messages (``mode``), interrupt,
archive, the queue, client tool results, the events page, the stream that resumes by itself,
``send`` (a message and its turn's events up to its ``session_done``), export and import."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator, Iterable, Mapping
from typing import Any, Literal, overload

from spool import _core
from spool._sync._paging import Pager
from spool._sync._resources._base import Resource, fields
from spool._sync._stream import EventStream
from spool._exceptions import InvalidRequest
from spool._models import (
    Event,
    EventAccepted,
    EventPage,
    EventsAccepted,
    NothingToInterrupt,
    QueuedTurn,
    QueuedTurns,
    Session,
    SessionStateView,
    SessionSummary,
    SessionSummaryPage,
)
from spool._operations import operation
from spool._streaming import Cursor, Reconnect

Content = str | builtins.list[Mapping[str, Any]]  # text, or content blocks {"type": "text", ...}
Mode = Literal["enqueue", "interrupt"]


class Sessions(Resource):
    @operation("create_session")
    def create(self, *, agent_id: str | None = None, title: str | None = None,
               metadata: Mapping[str, str] | None = None,
               agent_version: int | None = None,
               idempotency_key: str | None = None) -> Session:
        """A session of ``agent_id`` (at ``agent_version``, default its current one)."""
        body = fields({"agent_id": agent_id, "title": title, "metadata": metadata})
        return self._sender.model(self._sender.call(
            "create_session", params={"agent_version": agent_version}, json=body,
            idempotency_key=idempotency_key), Session)

    @operation("list_sessions")
    def list(self, *, agent_id: str | None = None, status: str | None = None,
             limit: int | None = None,
             min_position: int | None = None) -> Pager[SessionSummary]:
        params = {"agent_id": agent_id, "status": status, "limit": limit,
                  "min_position": min_position}
        return self._sender.pager(self._sender.call("list_sessions", params=params),
                                  SessionSummaryPage)

    @operation("get_session")
    def get(self, session_id: str) -> Session:
        return self._sender.model(self._sender.call("get_session", session_id), Session)

    @operation("get_state")
    def state(self, session_id: str, *, at: int | None = None) -> SessionStateView:
        """The session folded up to event ``at`` (default: its last)."""
        return self._sender.model(self._sender.call(
            "get_state", session_id, params={"at": at}), SessionStateView)

    @operation("submit_message")
    def submit(self, session_id: str, content: Content, *, mode: Mode | None = None,
               idempotency_key: str | None = None) -> Event:
        """Submits a turn: the ``user_message`` event written (a second turn while one runs is
        a 409 ``Conflict`` unless ``mode`` is ``enqueue`` or ``interrupt``)."""
        call = self._sender.call("submit_message", session_id, params={"mode": mode},
                                 json={"content": content}, idempotency_key=idempotency_key)
        return (self._sender.model(call, EventAccepted)).event

    @operation("interrupt")
    def interrupt(self, session_id: str) -> Event | None:
        """The ``session_interrupted`` event, or None when nothing ran or was queued."""
        response = self._sender.send(self._sender.call("interrupt", session_id))
        if response.status_code == 200:
            _core.answer(response, NothingToInterrupt)
            return None
        return _core.answer(response, EventAccepted).event

    @operation("archive")
    def archive(self, session_id: str) -> Session:
        return self._sender.model(self._sender.call("archive", session_id), Session)

    @operation("list_queue")
    def queue(self, session_id: str) -> builtins.list[QueuedTurn]:
        """The queued turns, oldest first."""
        answer = self._sender.model(self._sender.call("list_queue", session_id),
                                    QueuedTurns)
        return answer.data

    @operation("remove_queued")
    def remove_queued(self, session_id: str, turn_id: str) -> Event:
        return (self._sender.model(self._sender.call(
            "remove_queued", session_id, turn_id), EventAccepted)).event

    @operation("submit_tool_results")
    def tool_results(self, session_id: str, results: Iterable[Mapping[str, Any]], *,
                     idempotency_key: str | None = None) -> EventsAccepted:
        """Results of client tools: ``{"tool_use_id", "content", "is_error"?}`` each."""
        call = self._sender.call("submit_tool_results", session_id,
                                 json={"results": builtins.list(results)},
                                 idempotency_key=idempotency_key)
        return self._sender.model(call, EventsAccepted)

    @operation("sessions_list_events")
    def events(self, session_id: str, *, after: int | None = None,
               limit: int | None = None) -> Pager[Event]:
        """The session's events after seq ``after``, a page at a time."""
        return self._sender.pager(self._sender.call(
            "sessions_list_events", session_id, params={"after": after, "limit": limit}),
            EventPage)

    @operation("session_stream")
    def stream(self, session_id: str, *, after: int | None = None,
               reconnect: Reconnect | None = None) -> EventStream:
        """The session's events after seq ``after`` (None or 0: from the start), replayed then
        live, for ever, resuming by itself: iterate it, and close it when done."""
        cursor = Cursor(session_id, after or 0, reconnect or Reconnect(), contiguous=True)
        return EventStream(self._sender, self._sender.call("session_stream", session_id),
                           cursor)

    @overload
    def send(self, session_id: str, content: Content, *, follow: Literal[False] = False,
             mode: Mode | None = None) -> builtins.list[Event]: ...
    @overload
    def send(self, session_id: str, content: Content, *, follow: Literal[True],
             mode: Mode | None = None) -> Iterator[Event]: ...

    def send(self, session_id: str, content: Content, *, follow: bool = False,
             mode: Mode | None = None) -> builtins.list[Event] | Iterator[Event]:
        """Submits a message, then its turn's events from its ``user_message`` up to its
        ``session_done``: all of them once it is done, or (``follow=True``) an iterator that
        yields them as they stream. The message is written when this returns."""
        session = self.get(session_id)
        if session.agent_id is None:
            raise InvalidRequest(f"session {session_id} has no agent: a message starts no turn",
                                 details={"field": "session_id"})
        first = self.submit(session_id, content, mode=mode)
        events = self._turn(session_id, first)
        if follow:
            return events
        return [event for event in events]

    def _turn(self, session_id: str, first: Event) -> Iterator[Event]:
        """``first`` (the turn's ``user_message``), then the turn's own events: those naming it,
        and once it started, those naming no turn (a message's start, deltas and stop); a turn
        running before it, or queued after it, names another."""
        turn_id = first.data.get("turn_id")
        started = False
        yield first
        with self.stream(session_id, after=first.seq) as stream:
            for event in stream:
                named = event.data.get("turn_id")
                if named == turn_id:
                    started = started or event.type == "turn_started"
                elif named is not None or not started:
                    continue
                yield event
                if event.type == "session_done" and named == turn_id:
                    return

    @operation("export_session")
    def export(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The session as NDJSON lines, as they stream: a header ``{"kind": "session", ...}``,
        then one event per line."""
        return self._sender.lines(self._sender.call("export_session", session_id))

    @operation("import_sessions")
    def import_(self, lines: Iterable[Mapping[str, Any] | str | bytes]) -> dict[str, Any]:
        """Imports an export (its lines, decoded or not): ``{"sessions": [{"from", "id",
        "events", "written"}, ...], ...}``."""
        body = b"".join(_line(line) for line in lines)
        call = self._sender.call("import_sessions", content=body,
                                 headers={"Content-Type": "application/x-ndjson"})
        answer: dict[str, Any] = self._sender.json(call)
        return answer


def _line(line: Mapping[str, Any] | str | bytes) -> bytes:
    if isinstance(line, bytes):
        raw = line
    elif isinstance(line, str):
        raw = line.encode()
    else:
        raw = json.dumps(line, separators=(",", ":")).encode()
    return raw.rstrip(b"\n") + b"\n"
