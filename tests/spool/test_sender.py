"""spool/_async/_sender.py (and its sync copy) against the live server: a POST whose answer was
lost after the server committed it is sent again with the same ``Idempotency-Key`` and never
written twice; what cannot be sent again safely is not; 5xx and 429 answers are retried; errors
carry the server's ``type``, ``message``, ``details``, ``status`` and ``request_id``; a write's
``position`` read back with ``min_position``. An httpx transport around the real one loses the
answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import spool
from spool import _core
from tests.spool.conftest import Flavour


class Losing:
    """Around the real transport: the first ``lose`` requests reach the server, and their
    answers are dropped (a broken connection); ``refuse`` more are never sent; ``fail`` get a
    canned answer instead. Every request that came through is kept."""

    def __init__(self, lose: int = 0, refuse: int = 0,
                 fail: httpx.Response | None = None) -> None:
        self.lose, self.refuse, self.fail = lose, refuse, fail
        self.requests: list[httpx.Request] = []

    def before(self, request: httpx.Request) -> httpx.Response | None:
        self.requests.append(request)
        if self.refuse:
            self.refuse -= 1
            raise httpx.ConnectError("refused", request=request)
        if self.fail is not None:
            failed, self.fail = self.fail, None
            return failed
        return None

    def after(self, request: httpx.Request) -> None:
        if self.lose:
            self.lose -= 1
            raise httpx.ReadError("the connection dropped", request=request)


class SyncLosing(Losing, httpx.BaseTransport):
    def __init__(self, **faults: Any) -> None:
        super().__init__(**faults)
        self.inner = httpx.HTTPTransport()

    def close(self) -> None:
        self.inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        canned = self.before(request)
        if canned is not None:
            return canned
        response = self.inner.handle_request(request)
        response.read()
        self.after(request)
        return response


class AsyncLosing(Losing, httpx.AsyncBaseTransport):
    def __init__(self, **faults: Any) -> None:
        super().__init__(**faults)
        self.inner = httpx.AsyncHTTPTransport()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        canned = self.before(request)
        if canned is not None:
            return canned
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.after(request)
        return response


def losing(flavour: Flavour, **faults: Any) -> Losing:
    return AsyncLosing(**faults) if flavour.name == "async" else SyncLosing(**faults)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_core, "RETRY_BASE", 0.01)


async def owner_of(flavour: Flavour) -> tuple[Any, Any]:
    """A client holding a new tenant's owner key, and a session of an agent in it."""
    admin = flavour.client()
    tenant = await flavour.done(admin.tenants.create(name="retries"))
    acting = flavour.client(tenant=tenant.id)
    key = await flavour.done(acting.api_keys.create(name="o", role="owner"))
    for client in (admin, acting):
        await flavour.close(client)
    owner = flavour.client(key.key)
    agent = await flavour.done(owner.agents.create(name="echo"))
    return owner, await flavour.done(owner.sessions.create(agent_id=agent.id))


async def test_a_lost_answer_is_retried_with_the_same_key_and_written_once(
        flavour: Flavour) -> None:
    owner, session = await owner_of(flavour)
    transport = losing(flavour, lose=2)
    http = flavour.transport(transport)
    client = flavour.client(owner._sender.settings.api_key, http_client=http)
    event = await flavour.done(client.sessions.submit(session.id, "only once"))
    assert event.type == "user_message"
    keys = [r.headers["idempotency-key"] for r in transport.requests]
    assert len(keys) == 3 and len(set(keys)) == 1  # the first attempt and two retries
    log = await flavour.items(owner.sessions.events(session.id))
    assert [e.seq for e in log if e.type == "user_message"] == [event.seq]
    # Another call is another key: a second message is a second message.
    again = await flavour.done(client.sessions.submit(session.id, "only once",
                                                      mode="enqueue"))
    assert again.seq != event.seq
    assert transport.requests[-1].headers["idempotency-key"] not in keys
    for closing in (client, http, owner):
        await flavour.close(closing)


async def test_what_cannot_be_sent_again_is_not_and_what_never_left_is(
        flavour: Flavour) -> None:
    transport = losing(flavour, lose=1)
    http = flavour.transport(transport)
    admin = flavour.client(http_client=http)
    name = f"sent once ({flavour.name})"  # the server is the module's: both flavours use it
    with pytest.raises(spool.SpoolConnectionError) as caught:
        await flavour.done(admin.tenants.create(name=name))
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert len(transport.requests) == 1  # create_tenant takes no key: not sent again
    assert "idempotency-key" not in transport.requests[0].headers
    names = [t.name for t in await flavour.items(admin.tenants.list())]
    assert names.count(name) == 1
    transport.refuse = 2  # refused connections: the request never left, so it goes again
    sent = len(transport.requests)
    tenant = await flavour.done(admin.tenants.create(name="refused twice"))
    assert tenant.name == "refused twice" and len(transport.requests) == sent + 3
    for closing in (admin, http):
        await flavour.close(closing)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_an_error_answer_worth_retrying_is_retried(flavour: Flavour,
                                                         status: int) -> None:
    owner, session = await owner_of(flavour)
    envelope = {"error": {"type": "unavailable", "message": "try later"}}
    transport = losing(flavour, fail=httpx.Response(status, json=envelope,
                                                    headers={"Retry-After": "0"}))
    http = flavour.transport(transport)
    client = flavour.client(owner._sender.settings.api_key, http_client=http, max_retries=1)
    event = await flavour.done(client.sessions.submit(session.id, "after a fault"))
    assert event.type == "user_message" and len(transport.requests) == 2
    transport.fail = httpx.Response(status, json=envelope)
    client_without = flavour.client(owner._sender.settings.api_key, http_client=http,
                                    max_retries=0)
    with pytest.raises(spool.SpoolError) as caught:
        await flavour.done(client_without.sessions.get(session.id))
    assert (caught.value.status, caught.value.type) == (status, "unavailable")
    for closing in (client, client_without, http, owner):
        await flavour.close(closing)


async def test_errors_carry_the_envelope_status_and_request_id(flavour: Flavour) -> None:
    owner, _ = await owner_of(flavour)
    with pytest.raises(spool.NotFound) as missing:
        await flavour.done(owner.sessions.get("ses_01M8000000000000000000000A"))
    error = missing.value
    assert (error.status, error.type) == (404, "not_found")
    assert error.request_id and error.request_id.startswith("req_") and error.message
    with pytest.raises(spool.InvalidRequest) as invalid:
        await flavour.items(owner.sessions.list(limit=0))
    assert invalid.value.status == 400 and invalid.value.details["field"] == "limit"
    stranger = flavour.client("spk_not-a-key")
    with pytest.raises(spool.Unauthorized) as denied:
        await flavour.done(stranger.sessions.get("ses_01M8000000000000000000000A"))
    assert denied.value.status == 401 and denied.value.request_id
    for closing in (owner, stranger):
        await flavour.close(closing)


async def test_a_write_is_read_back_at_its_position(flavour: Flavour) -> None:
    owner, session = await owner_of(flavour)
    agents = [await flavour.done(owner.agents.create(name=f"a{i}")) for i in range(3)]
    positions = [a.position for a in agents]
    assert all(isinstance(p, int) for p in positions) and positions == sorted(positions)
    assert positions[0] > session.position
    # The agent view answers once it has applied the last write, with each agent in it.
    listed = await flavour.items(owner.agents.list(min_position=positions[-1]))
    assert {a.id for a in agents} <= {a.id for a in listed}
    read = await flavour.done(owner.agents.get(agents[-1].id, min_position=positions[-1]))
    assert read.view is not None and read.position is None  # a read wrote nothing
    await flavour.close(owner)
