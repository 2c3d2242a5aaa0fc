"""spool/_async/_paging.py (and its sync copy) against the live server: a list pages by itself
across pages of ``limit`` items, in order, each page asked after the last one's cursor."""

from __future__ import annotations

from tests.spool.conftest import Flavour


async def test_a_list_pages_by_itself(flavour: Flavour) -> None:
    admin = flavour.client()
    tenant = await flavour.done(admin.tenants.create(name=f"paging-{flavour.name}"))
    acting = flavour.client(tenant=tenant.id)
    agents = [await flavour.done(acting.agents.create(name=f"a{i}")) for i in range(5)]
    pager = acting.agents.list(limit=2, min_position=agents[-1].position)
    pages = await flavour.items(pager.pages())
    assert [len(page.data) for page in pages] == [2, 2, 1]
    assert [page.has_more for page in pages] == [True, True, False]
    assert [page.next_cursor for page in pages[:2]] == [agents[1].id, agents[3].id]
    assert [b.id for b in await flavour.items(pager)] == [b.id for b in agents]
    assert [b.id for b in await flavour.items(pager)] == [b.id for b in agents]  # again
    # A list under one item pages by seq: the session's log, two events a page.
    session = await flavour.done(acting.sessions.create())
    for text in "abc":
        await flavour.done(acting.sessions.submit(session.id, text))
    log = await flavour.items(acting.sessions.events(session.id, limit=2))
    assert [e.seq for e in log] == [1, 2, 3, 4]
    assert [e.seq for e in await flavour.items(acting.sessions.events(session.id,
                                                                      after=2))] == [3, 4]
    for client in (admin, acting):
        await flavour.close(client)
