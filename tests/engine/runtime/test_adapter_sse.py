"""The SSE parser both provider adapters read their streams with."""

from __future__ import annotations

from engine.runtime.adapters.sse import ServerSentEvent, SSEParser


def feed(parser: SSEParser, body: str) -> list[ServerSentEvent]:
    return [event for line in body.split("\n") if (event := parser.feed(line)) is not None]


def test_an_event_is_its_name_and_its_data_lines_joined() -> None:
    body = "event: message_start\ndata: {\"a\":\ndata:1}\n\n"
    assert feed(SSEParser(), body) == [ServerSentEvent("message_start", '{"a":\n1}')]


def test_comments_other_fields_and_events_without_data_are_skipped() -> None:
    body = ": ping\nid: 7\nretry: 10\nevent: ping\n\ndata: x\n\n"
    assert feed(SSEParser(), body) == [ServerSentEvent("", "x")]


def test_only_one_space_after_the_colon_is_dropped() -> None:
    assert feed(SSEParser(), "data:  two\n\n") == [ServerSentEvent("", " two")]


def test_an_event_cut_before_its_blank_line_waits_for_flush() -> None:
    parser = SSEParser()
    assert feed(parser, "event: e\ndata: cut") == []
    assert parser.flush() == ServerSentEvent("e", "cut")
    assert parser.flush() is None
