"""The export and import methods (``sessions.export``, ``events.export``, ``sessions.import_``)
against the routes the export branch adds (GET /v1/sessions/{id}/export, GET /v1/export,
POST /v1/sessions/import, NDJSON). The server does not serve them yet, so an httpx
MockTransport answers as they are specified; the live server's answer today is checked too."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.spool.conftest import Flavour

HEADER = {"kind": "session", "id": "ses_1", "events": 2}
EVENTS = [{"seq": 1, "type": "session_created"}, {"seq": 2, "type": "user_message"}]


class Routes:
    """The three routes as specified; what the import received is kept."""

    def __init__(self) -> None:
        self.imported: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        ndjson = {"Content-Type": "application/x-ndjson"}
        lines = b"".join(json.dumps(line).encode() + b"\n" for line in [HEADER, *EVENTS])
        if request.url.path == "/v1/sessions/ses_1/export":
            return httpx.Response(200, headers=ndjson, content=lines + b"\n")
        if request.url.path == "/v1/export":
            return httpx.Response(200, headers=ndjson, content=lines + lines)
        if request.url.path == "/v1/sessions/import" and request.method == "POST":
            self.imported.append(request)
            return httpx.Response(200, json={"sessions": [
                {"from": "ses_1", "id": "ses_2", "events": 2, "written": 2}]})
        return httpx.Response(404, json={"error": {"type": "not_found", "message": "no"}})


@pytest.mark.parametrize("name", ["sync", "async"])
async def test_export_yields_the_lines_and_import_sends_them(name: str) -> None:
    routes = Routes()
    flavour = Flavour(name, "http://spool.test")
    http = flavour.transport(httpx.MockTransport(routes))
    client = flavour.client("spk_x", http_client=http)
    lines = await flavour.items(client.sessions.export("ses_1"))
    assert lines == [HEADER, *EVENTS]
    assert await flavour.items(client.events.export()) == [HEADER, *EVENTS] * 2
    answer = await flavour.done(client.sessions.import_(
        [lines[0], json.dumps(lines[1]), json.dumps(lines[2]).encode() + b"\n"]))
    assert answer["sessions"][0]["id"] == "ses_2"
    [request] = routes.imported
    assert request.headers["content-type"] == "application/x-ndjson"
    sent = [json.loads(line) for line in request.content.decode().splitlines()]
    assert sent == lines and request.content.endswith(b"\n")
    for closing in (client, http):
        await flavour.close(closing)

