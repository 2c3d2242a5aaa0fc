"""Exports read the log a bounded page at a time, and a session's export ends at the
``last_seq`` its header states."""

from __future__ import annotations

import msgspec

from engine.domain.exports import Exports
from engine.engine import Engine
from engine.events import ContentBlock, UserMessage, new_event

TENANT = "ten_a"


async def a_session(engine: Engine, messages: int) -> str:
    session, _ = await engine.sessions.create(TENANT, title="t")
    events = [new_event(UserMessage(turn_id=f"turn_{n}", content=[ContentBlock(text="x")]))
              for n in range(messages)]
    if events:
        await engine.store.append(session.id, events, tenant_id=TENANT, stream_type="session")
    return session.id


async def test_a_tenant_export_reads_pages_of_at_most_the_page_size(engine: Engine) -> None:
    sizes = {await a_session(engine, 9): [1, 3, 3, 3, 1], await a_session(engine, 2): [1, 3]}
    exports = Exports(engine.store, engine.agents, page_size=3)
    pages = [page async for page in exports.pages(TENANT)]
    assert [len(page) for page in pages] == [n for sid in sorted(sizes) for n in sizes[sid]]
    headers = [msgspec.json.decode(page[0]) for page in pages if b'"kind"' in page[0]]
    assert [h["session_id"] for h in headers] == sorted(sizes)


async def test_session_ids_are_read_a_page_at_a_time_too(engine: Engine) -> None:
    sids = sorted([await a_session(engine, 0) for _ in range(5)])
    exports = Exports(engine.store, engine.agents, page_size=2)
    pages = [page async for page in exports._session_id_pages(TENANT)]
    assert pages == [sids[:2], sids[2:4], sids[4:]]


async def test_a_session_export_ends_at_the_last_seq_of_its_header(engine: Engine) -> None:
    sid = await a_session(engine, 4)
    exports = Exports(engine.store, engine.agents, page_size=2)
    chunks = await exports.session(TENANT, sid)
    header = msgspec.json.decode(await anext(chunks))
    assert header["last_seq"] == 5 and header["agent"] is None
    await engine.store.append(sid, [new_event(UserMessage(turn_id="turn_late", content=[]))],
                              tenant_id=TENANT, stream_type="session")
    lines = b"".join([chunk async for chunk in chunks]).splitlines()
    assert [msgspec.json.decode(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]
