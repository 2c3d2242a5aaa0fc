"""Reading an agent reads the one version it needs, however many versions came before: counted
on a real store as the events it hands back with their stored JSON (a config, whole, each)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from engine.domain.agents import AgentBroken, AgentPatch, Agents
from engine.errors import Conflict, StreamMoved
from engine.events import AgentConfig, Event, ModelConfig, NewEvent
from engine.log.store import EventStore
from tests.helpers import store_on

TENANT = "ten_reads"


class CountingStore(EventStore):
    """The real store, counting the events it returns with their data (not headers only)."""

    with_data = 0

    def _count(self, events: list[Event]) -> list[Event]:
        self.with_data += sum(bytes(event.data) != b"{}" for event in events)
        return events

    async def read_stream(self, stream_id: str, **kwargs: Any) -> list[Event]:
        return self._count(await super().read_stream(stream_id, **kwargs))

    async def read_stream_types(self, stream_id: str, types: frozenset[str], **kwargs: Any
                                ) -> list[Event]:
        return self._count(await super().read_stream_types(stream_id, types, **kwargs))

    async def read_streams_types(self, stream_ids: Sequence[str], types: frozenset[str],
                                 **kwargs: Any) -> list[Event]:
        return self._count(await super().read_streams_types(stream_ids, types, **kwargs))

    async def read_events_at(self, keys: Sequence[tuple[str, int]], **kwargs: Any
                             ) -> list[Event]:
        return self._count(await super().read_events_at(keys, **kwargs))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[CountingStore]:
    async with store_on(database_url, 2, CountingStore) as store:
        yield store


async def _reads(store: CountingStore, agents: Agents, agent_id: str) -> list[int]:
    """Events read with data by each of: get, the current version, version 2, a PATCH."""
    counts = []
    for read in (lambda: agents.get(TENANT, agent_id),
                 lambda: agents.version(TENANT, agent_id, None),
                 lambda: agents.version(TENANT, agent_id, 2),
                 lambda: agents.update(TENANT, agent_id, AgentPatch(system="x"))):
        before = store.with_data
        await read()
        counts.append(store.with_data - before)
    return counts


async def test_a_read_touches_one_version_however_many_there_are(store: CountingStore) -> None:
    agents = Agents(store)
    agent, _ = await agents.create(TENANT, AgentConfig(name="big", system="s" * 100_000))
    await agents.update(TENANT, agent.id, AgentPatch(system="t" * 100_000))
    few = await _reads(store, agents, agent.id)
    for i in range(20):
        await agents.update(TENANT, agent.id, AgentPatch(system=f"{i}" * 100_000))
    many = await _reads(store, agents, agent.id)
    assert few == many == [1, 1, 1, 2], (few, many)  # a PATCH: the current version, the result
    got = await agents.get(TENANT, agent.id)
    assert got.version == 24 and got.system == "x"
    assert (await agents.version(TENANT, agent.id, 2)).config.system == "t" * 100_000
    before = store.with_data
    page = await agents.versions(TENANT, agent.id, after=20, limit=2)
    assert [v.version for v in page.data] == [21, 22] and page.has_more
    assert (page.next_cursor, store.with_data - before) == ("22", 2)  # the page's versions only
    last = await agents.versions(TENANT, agent.id, after=22, limit=5)
    assert [v.version for v in last.data] == [23, 24] and not last.has_more


async def test_a_version_too_deep_to_decode_breaks_the_agent_until_a_patch(
        store: CountingStore, database_url: str) -> None:
    """The store refuses JSON this deep, but the events table may hold it (an older build, a
    restore): written there directly."""
    agents = Agents(store)
    agent, _ = await agents.create(TENANT, AgentConfig(name="deep"))
    await agents.update(TENANT, agent.id, AgentPatch(system="v2"))
    deep = '{"x":' + "[" * 5000 + "]" * 5000 + "}"
    data = '{"type":"agent_updated","version":2,"config":{"name":"deep","model":{"params":%s}}}'
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE events SET data = $2::text::json"
                           " WHERE stream_id = $1 AND seq = 2", agent.id, data % deep)
    finally:
        await conn.close()
    broken = await agents.get(TENANT, agent.id)
    assert broken.version == 2 and broken.broken is not None
    assert "version 2 cannot be read" in broken.broken
    with pytest.raises(AgentBroken):
        await agents.version(TENANT, agent.id, None)
    assert (await agents.version(TENANT, agent.id, 1)).config.name == "deep"
    repaired, _ = await agents.update(TENANT, agent.id, AgentPatch(model=ModelConfig()))
    assert (repaired.version, repaired.broken, repaired.name) == (3, None, "deep")


async def test_a_list_reads_each_agents_current_version_only(store: CountingStore) -> None:
    agents = Agents(store)
    ids = []
    for name in ("a", "b", "c"):
        agent, _ = await agents.create(TENANT, AgentConfig(name=name))
        for i in range(4):
            await agents.update(TENANT, agent.id, AgentPatch(system=f"{name}{i}"))
        ids.append(agent.id)
    before = store.with_data
    page = await agents.list_agents(TENANT, after=None, limit=10)
    assert store.with_data - before == 3
    assert [(a.id, a.version, a.system) for a in page.data] == [
        (agent_id, 5, f"{name}3") for agent_id, name in zip(sorted(ids), "abc", strict=True)]


async def test_heartbeats_never_starve_a_config_change(store: CountingStore) -> None:
    """Runtimes beating back to back (four at once here) used to win every try of a PATCH
    and make it a 409 "too busy" on a loaded machine: in one process they now take turns."""
    agents = Agents(store)
    agent, _ = await agents.create(TENANT, AgentConfig(name="a", model=ModelConfig()))
    beating = True

    async def heartbeats() -> int:
        sent = 0
        while beating:
            await agents.heartbeat(TENANT, agent.id, "atk_x", None)
            sent += 1
        return sent

    beaters = [asyncio.create_task(heartbeats()) for _ in range(4)]
    try:
        await asyncio.sleep(0.05)
        for version in range(2, 12):
            updated, _ = await agents.update(TENANT, agent.id, AgentPatch(system=f"v{version}"))
            assert updated.version == version
    finally:
        beating = False
    assert all(sent > 0 for sent in await asyncio.gather(*beaters))


class RefusingStore(EventStore):
    """The real store, refusing every append with ``refusal`` once it is set."""

    refusal: Conflict | None = None
    refused = 0

    async def append(self, stream_id: str, events: Sequence[NewEvent], **kwargs: Any
                     ) -> list[Event]:
        if self.refusal is not None:
            self.refused += 1
            raise self.refusal
        return await super().append(stream_id, events, **kwargs)


async def test_only_a_moved_stream_makes_a_config_change_try_again(database_url: str) -> None:
    """A change refused because the agent's stream moved is decided again (up to "too busy");
    one refused for another reason reaches the caller as it is, at the first try."""
    async with store_on(database_url, 2, RefusingStore) as store:
        agents = Agents(store)
        agent, _ = await agents.create(TENANT, AgentConfig(name="a", model=ModelConfig()))
        store.refusal = StreamMoved("moved", details={"expected_seq": 1, "actual_seq": 1})
        with pytest.raises(Conflict, match="too busy"):
            await agents.update(TENANT, agent.id, AgentPatch(system="x"))
        assert store.refused > 1
        store.refused, store.refusal = 0, Conflict("ids already used by other events")
        with pytest.raises(Conflict, match="ids already used") as refused:
            await agents.update(TENANT, agent.id, AgentPatch(system="x"))
        assert type(refused.value) is Conflict and store.refused == 1
