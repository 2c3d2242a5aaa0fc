"""The shared sets of session event types in engine/events.py."""

from __future__ import annotations

from engine.events import EVENT_TYPES, FROM_OUTSIDE, SESSION_ARCHIVED, WAKES_A_WORKER


def test_the_outside_events_are_event_types() -> None:
    assert FROM_OUTSIDE <= EVENT_TYPES and SESSION_ARCHIVED in EVENT_TYPES


def test_a_worker_wakes_for_every_outside_event_but_archiving() -> None:
    wakes = {"user_message", "tool_result", "session_interrupted", "approval_resolved"}
    assert wakes == WAKES_A_WORKER
    assert wakes | {SESSION_ARCHIVED} == FROM_OUTSIDE
