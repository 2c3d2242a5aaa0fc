"""The importer's checks and remapping, without a database: every fault names its line and
field, ids are derived the same way each time and per tenant, numbers keep their text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.imports import parse, remapped
from engine.errors import Unprocessable
from engine.events import Event, EventMeta
from engine.ids import derived_id, is_id, new_id

SID, AID = new_id("ses"), new_id("agt")
CONFIG = {"name": "a", "model": {"adapter": "scripted", "name": "scripted"}}
WHEN = "2025-01-02T03:04:05Z"


def header(**fields: Any) -> dict[str, Any]:
    return {"kind": "session", "format": 1, "session_id": SID, "tenant_id": "ten_old",
            "last_seq": 2, "exported_at": WHEN, "agent": {"id": AID, "version": 3,
                                                          "config": CONFIG}, **fields}


def event(seq: int, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "stream_id": SID, "stream_type": "session", "seq": seq,
            "position": 10 + seq, "type": data["type"], "data": data, "meta": {},
            "created_at": WHEN, **fields}


CREATED = {"type": "session_created", "tenant_id": "ten_old", "agent_id": AID,
           "agent_version": 3, "metadata": {}}
TURN = new_id("turn")
MESSAGE = {"type": "user_message", "turn_id": TURN, "content": [{"type": "text", "text": "hi"}]}


def body(*lines: dict[str, Any] | bytes) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else msgspec.json.encode(line)
                      for line in lines) + b"\n"


def fault(data: bytes) -> dict[str, Any]:
    with pytest.raises(Unprocessable) as info:
        parse(data)
    details: dict[str, Any] = info.value.details
    return details


def test_a_whole_export_parses_blank_lines_and_all() -> None:
    [session] = parse(b"\n" + body(header(), event(1, CREATED), b"  ", event(2, MESSAGE)))
    assert session.header.session_id == SID and [e.seq for e in session.events] == [1, 2]
    tenant = {"kind": "tenant", "format": 1, "tenant_id": "ten_old", "exported_at": WHEN}
    assert len(parse(body(tenant, header(), event(1, CREATED), event(2, MESSAGE)))) == 1
    assert parse(body(tenant)) == []  # a tenant without sessions


@pytest.mark.parametrize(("data", "line", "field"), [
    (b"", 1, "body"),
    (body(event(1, CREATED)), 1, "kind"),
    (body(header(), event(1, CREATED), event(2, MESSAGE), header()), 4, "session_id"),
    (body(header(session_id="sess_1")), 1, "session_id"),
    (body(header(agent={"id": AID, "version": 3, "config": {**CONFIG, "name": ""}})), 1,
     "agent.config.name"),
    (body(header(), event(1, {**CREATED, "agent_version": 2})), 2, "data.agent_id"),
    (body(header(), event(1, MESSAGE)), 2, "type"),
    (body(header(), event(1, CREATED), event(2, CREATED)), 3, "type"),
    (body(header(), event(1, CREATED), event(2, {**MESSAGE, "type": "session_done"})), 3,
     "data.status"),
    (body(header(), event(1, CREATED), event(2, MESSAGE, type="session_done")), 3, "data.type"),
    (body(header(), event(1, CREATED), event(2, MESSAGE, meta=[])), 3, "meta"),
    (body(header(), event(1, CREATED), event(2, MESSAGE, id="x")), 3, "id"),
    (body(header(), event(1, CREATED), {"kind": "event"}), 3, "kind"),
    (body(header(), event(1, CREATED), b"[1]"), 3, "line"),
    (body(header(), b'{"a": ' * 100_000), 2, "line"),
    (body(header(), event(1, CREATED), b"\xff\xfe"), 3, "line"),
    (body(header(), event(1, CREATED), event(2, MESSAGE), event(3, MESSAGE)), 5, "seq"),
])
def test_the_first_fault_is_named_by_line_and_field(data: bytes, line: int, field: str) -> None:
    assert fault(data) == {"line": line, "field": field}


def test_derived_ids_are_stable_per_tenant_and_keep_prefix_and_time() -> None:
    new = derived_id(SID, "ten_b")
    assert new == derived_id(SID, "ten_b") != derived_id(SID, "ten_c") != SID
    assert is_id(new, "ses") and new[:14] == SID[:14]
    assert derived_id("toolu_01abc", "ten_b") == "toolu_01abc"  # not one of ours: kept


def test_remapping_derives_the_engine_ids_and_keeps_everything_else() -> None:
    def stored(data: bytes, type_: str) -> Event:
        return Event(id=uuid.uuid4(), stream_id=SID, stream_type="session", seq=1, position=1,
                     type=type_, data=msgspec.Raw(data), meta=msgspec.Raw(b'{"actor":"k"}'),
                     created_at=datetime.now(UTC))

    source = stored(msgspec.json.encode(CREATED), "session_created")
    created = remapped(source, "ten_b", 1, event_id=uuid.UUID(int=1),
                       meta=EventMeta(actor="key_b", request_id="req_1"))
    assert msgspec.json.decode(created.data) == {
        **CREATED, "tenant_id": "ten_b", "agent_id": derived_id(AID, "ten_b"),
        "agent_version": 1}
    assert msgspec.json.decode(created.meta) == {
        "actor": "key_b", "request_id": "req_1", "causation_id": str(source.id)}
    assert created.id == uuid.UUID(int=1)
    use = (b'{"type":"tool_use","turn_id":"%s","message_id":"msg_x","tool_use_id":"toolu_1",'
           b'"name":"n","input":{"big":1e400,"exact":0.1000000000000000055},'
           b'"executor":"client"}' % TURN.encode())
    data = remapped(stored(use, "tool_use"), "ten_b", None, event_id=uuid.uuid4()).data
    assert b'"big":1E+400' in data and b'"exact":0.1000000000000000055' in data
    decoded = msgspec.json.decode(data.replace(b"1E+400", b"1"))
    assert decoded["turn_id"] == derived_id(TURN, "ten_b") and decoded["tool_use_id"] == "toolu_1"


GOOD = [header(), event(1, CREATED), event(2, MESSAGE)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(GOOD), st.dictionaries(st.text(max_size=5),
                                                                  st.integers())),
                max_size=6),
       st.lists(st.binary(max_size=20), max_size=2))
def test_any_file_parses_or_is_unprocessable_at_a_line_of_it(
        lines: list[dict[str, Any]], junk: list[bytes]) -> None:
    data = b"\n".join([msgspec.json.encode(line) for line in lines] + junk)
    try:
        parse(data)
    except Unprocessable as exc:
        assert 1 <= exc.details["line"] <= data.count(b"\n") + 2
        assert isinstance(exc.details["field"], str) and exc.details["field"]
