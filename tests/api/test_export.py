"""Export and import over HTTP: a session exported from one tenant and imported into another
is the same session (types, seqs, times, payloads with its ids remapped, its state and
views); importing again writes nothing; a corrupt line is a 422 naming it, with nothing
written; a tenant's export holds every session; roles and tenants are kept apart."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from api.app import create_app
from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Api, Live
from tests.helpers import agent, approved_client_call, assert_error, log, say, session, settle

NDJSON = {"Content-Type": "application/x-ndjson"}
REMAPPED = ("turn_id", "message_id", "approval_id", "agent_id")


async def export(api: Api, key: str, path: str) -> list[dict[str, Any]]:
    response = await api.request("GET", path, key)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [msgspec.json.decode(line) for line in response.content.splitlines()]


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(msgspec.json.encode(line) + b"\n" for line in lines)


async def import_(api: Api, key: str, body: bytes) -> httpx.Response:
    return await api.request("POST", "/v1/sessions/import", key, content=body, headers=NDJSON)


async def head(api: Api) -> int:
    position: int = await api.app.state.engine.store.head()
    return position


def same_modulo_ids(old: list[dict[str, Any]], new: list[dict[str, Any]],
                    tenant_id: str) -> dict[str, str]:
    """The events match but for the engine ids in their data, which map one to one (returned,
    old to new), session_created's tenant and agent version, and the meta: the import's,
    caused by the source event."""
    ids: dict[str, str] = {}
    assert [(e["type"], e["seq"], e["created_at"]) for e in old] == [
        (e["type"], e["seq"], e["created_at"]) for e in new]
    assert [e["meta"]["causation_id"] for e in new] == [e["id"] for e in old]
    assert len({e["meta"]["request_id"] for e in new}) <= 2  # at most two imports wrote them
    for before, after in zip(old, new, strict=True):
        a, b = dict(before["data"]), dict(after["data"])
        for key in REMAPPED:
            if key in a:
                assert ids.setdefault(a.pop(key), b[key]) == b.pop(key)
        if before["type"] == "session_created":
            assert b.pop("tenant_id") == tenant_id
            a.pop("tenant_id"), a.pop("agent_version"), b.pop("agent_version")
        assert a == b
    assert len(set(ids.values())) == len(ids) and not set(ids) & set(ids.values())
    return ids


async def test_a_session_imported_into_another_tenant_is_the_same_session(api: Api) -> None:
    key, sid, events = await approved_client_call(api)
    lines = await export(api, key, f"/v1/sessions/{sid}/export")
    header, exported = lines[0], lines[1:]
    assert header["kind"] == "session" and header["session_id"] == sid
    assert header["last_seq"] == len(events) and header["agent"]["version"] == 1
    assert header["agent"]["config"]["tools"][0]["requires_approval"] is True
    assert exported == events

    other = await api.tenant("other")
    other_key = await api.key(other, "member")
    response = await import_(api, other_key, ndjson(lines))
    assert response.status_code == 200, response.text
    [result] = response.json()["sessions"]
    assert result["from"] == sid and result["id"] != sid
    assert result["events"] == result["written"] == len(events)
    assert int(response.headers["Spool-Position"]) == await head(api)

    new_sid = result["id"]
    imported = await log(api, other_key, new_sid)
    ids = same_modulo_ids(events, imported, other)
    [actor] = {e["meta"]["actor"] for e in imported}  # the importing key, for every event
    assert actor not in {e["meta"].get("actor") for e in events}
    before = (await api.request("GET", f"/v1/sessions/{sid}", key)).json()
    after = (await api.request("GET", f"/v1/sessions/{new_sid}", other_key)).json()
    assert after["agent_id"] == ids[before["agent_id"]] and after["agent_version"] == 1
    for field in ("status", "usage", "title", "metadata", "created_at", "updated_at",
                  "last_seq", "pending_tool_use_ids"):
        assert after[field] == before[field], field
    # The views see it like any other session: the summary list and the agent's view.
    position = response.headers["Spool-Position"]
    [summary] = (await api.request("GET", f"/v1/sessions?min_position={position}",
                                   other_key)).json()["data"]
    assert summary["id"] == new_sid and summary["status"] == "idle" and summary["turns"] == 1
    imported_agent = (await api.request("GET", f"/v1/agents/{after['agent_id']}?min_position="
                                        f"{position}", other_key)).json()
    assert imported_agent["tools"] == header["agent"]["config"]["tools"]
    assert imported_agent["view"]["sessions"] == 1 and imported_agent["view"]["turns"] == 1


async def test_importing_the_same_file_again_writes_nothing(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "hello"}]))
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    body = ndjson(await export(api, key, f"/v1/sessions/{sid}/export"))
    other_key = await api.key(await api.tenant("other"), "member")
    first = (await import_(api, other_key, body)).json()
    reached = await head(api)
    again = await import_(api, other_key, body)
    assert again.status_code == 200 and "Spool-Position" not in again.headers
    [result] = again.json()["sessions"]
    assert result == {**first["sessions"][0], "written": 0}
    assert await head(api) == reached
    listed = (await api.request("GET", "/v1/agents", other_key)).json()["data"]
    assert len(listed) == 1  # matched, not created twice


async def test_an_export_that_grew_imports_only_its_new_events(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "one"}, {"text": "two"}]))
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    other = await api.tenant("other")
    other_key = await api.key(other, "member")
    first = await export(api, key, f"/v1/sessions/{sid}/export")
    await import_(api, other_key, ndjson(first))
    await say(api, key, sid, "more")
    await settle(api, key, sid, "idle")
    grown = await export(api, key, f"/v1/sessions/{sid}/export")
    [result] = (await import_(api, other_key, ndjson(grown))).json()["sessions"]
    assert result["written"] == len(grown) - len(first) > 0
    same_modulo_ids(grown[1:], await log(api, other_key, result["id"]), other)


def _corruptions(lines: list[dict[str, Any]]) -> list[tuple[bytes, int, str]]:
    """(a corrupt file, the line named, the field named)."""
    def with_line(number: int, value: Any) -> bytes:
        body = [msgspec.json.encode(line) for line in lines]
        body[number - 1] = value if isinstance(value, bytes) else msgspec.json.encode(value)
        return b"\n".join(body) + b"\n"

    third = lines[2]
    return [
        (with_line(3, b'{"id": "not json'), 3, "line"),
        (with_line(3, {**third, "seq": 7}), 3, "seq"),
        (with_line(3, {**third, "type": "no_such_thing"}), 3, "type"),
        (with_line(3, {**third, "data": {**third["data"], "turn_id": 5}}), 3, "data.turn_id"),
        (with_line(1, {**lines[0], "format": 9}), 1, "format"),
        (with_line(1, lines[1]), 1, "kind"),
        (with_line(4, {**lines[3], "stream_id": "ses_x"}), 4, "stream_id"),
        (b"".join(msgspec.json.encode(line) + b"\n" for line in lines[:-1]), len(lines), "seq"),
    ]


async def test_a_corrupt_line_is_422_naming_it_and_nothing_is_written(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = await session(api, key, await agent(api, key, [{"text": "hello"}]))
    await say(api, key, sid, "hi")
    await settle(api, key, sid, "idle")
    lines = await export(api, key, f"/v1/sessions/{sid}/export")
    other_key = await api.key(await api.tenant("other"), "member")
    before = await head(api)
    for body, line, field in _corruptions(lines):
        error = assert_error(await import_(api, other_key, body), 422, "invalid_request")
        assert error["details"] == {"line": line, "field": field}, (error, line, field)
        assert f"line {line}" in error["message"]
    assert await head(api) == before
    assert (await api.request("GET", "/v1/agents", other_key)).json()["data"] == []


async def test_a_tenant_export_holds_every_session_and_imports_whole(api: Api) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant, "member")
    agent_id = await agent(api, key, [{"text": "hello"}])
    sids = sorted([await session(api, key, agent_id) for _ in range(2)])
    bare = (await api.request("POST", "/v1/sessions", key, json={"title": "no agent"})).json()
    await say(api, key, sids[0], "hi")
    await settle(api, key, sids[0], "idle")
    lines = await export(api, key, "/v1/export")
    assert lines[0]["kind"] == "tenant" and lines[0]["tenant_id"] == tenant
    headers = [line for line in lines if line.get("kind") == "session"]
    assert [h["session_id"] for h in headers] == sorted([*sids, bare["id"]])
    assert sum(h["last_seq"] for h in headers) == len(lines) - 1 - len(headers)

    other_key = await api.key(await api.tenant("other"), "member")
    result = (await import_(api, other_key, ndjson(lines))).json()
    assert [s["from"] for s in result["sessions"]] == [h["session_id"] for h in headers]
    assert result["written"] == result["events"] == len(lines) - 1 - len(headers)
    agents = (await api.request("GET", "/v1/agents", other_key)).json()["data"]
    assert len(agents) == 1  # both sessions pinned the one version: one agent


async def test_another_tenants_session_is_404_and_roles_hold(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    sid = (await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
    other = await api.tenant("other")
    viewer = await api.key(other, "viewer")
    assert_error(await api.request("GET", f"/v1/sessions/{sid}/export", viewer), 404,
                 "not_found")
    assert_error(await api.request("GET", "/v1/sessions/ses_nope/export", viewer), 404,
                 "not_found")
    assert_error(await api.request("GET", "/v1/export"), 401, "unauthorized")
    lines = await export(api, key, f"/v1/sessions/{sid}/export")
    assert (await export(api, viewer, "/v1/export"))[1:] == []  # a viewer reads its own
    assert_error(await import_(api, viewer, ndjson(lines)), 403, "forbidden")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_the_import_body_is_ndjson(api: Api, content_type: str) -> None:
    key = await api.key(await api.tenant(), "member")
    response = await api.request("POST", "/v1/sessions/import", key, content=b"{}\n",
                                 headers={"Content-Type": content_type})
    assert_error(response, 415, "invalid_request")


async def test_an_import_over_the_limit_is_413(settings: Settings, engine: Engine) -> None:
    app = create_app(msgspec.structs.replace(settings, import_max_bytes=1024), engine)
    api = Api(httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                base_url="http://spool.test"), app)
    async with api.client:
        key = await api.key(await api.tenant(), "member")
        response = await import_(api, key, b'{"kind": "session"}\n' * 100)
    error = assert_error(response, 413, "invalid_request")
    assert error["details"] == {"field": "body"}


async def test_the_import_path_allows_only_post(api: Api) -> None:
    key = await api.key(await api.tenant(), "member")
    response = await api.request("OPTIONS", "/v1/sessions/import", key)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


async def test_an_export_is_streamed_over_a_socket(live: Live) -> None:
    key = await live.member_key()
    sid = await live.session(key)
    for n in range(3):
        await live.say(key, sid, f"message {n}")
    async with live.client.stream("GET", f"/v1/sessions/{sid}/export",
                                  headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        lines = [msgspec.json.decode(line) async for line in response.aiter_lines()]
    assert lines[0]["last_seq"] == 4 and [e["seq"] for e in lines[1:]] == [1, 2, 3, 4]


async def test_a_tenant_export_pages_through_everything_by_the_page_size_setting(
        settings: Settings) -> None:
    small = msgspec.structs.replace(settings, export_page_events=1, workers=0)
    async with Engine(small) as engine:
        assert engine.exports.page_size == 1
        app = create_app(small, engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://spool.test") as client:
            api = Api(client, app)
            key = await api.key(await api.tenant(), "member")
            sids = sorted([(await api.request("POST", "/v1/sessions", key, json={})).json()["id"]
                           for _ in range(3)])
            for sid in sids:
                for n in range(2):
                    await say(api, key, sid, f"message {n}")
            lines = await export(api, key, "/v1/export")
    assert [(line.get("session_id") or line.get("stream_id"), line.get("seq"))
            for line in lines[1:]] == [(sid, seq) for sid in sids for seq in (None, 1, 2, 3)]
