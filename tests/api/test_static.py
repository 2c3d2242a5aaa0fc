"""``/static/...`` and ``/docs``: the app's own files for browsers, each with its content type,
an ETag it answers 304 to, a Content-Security-Policy, and no place in the OpenAPI document.
``spool.js`` is served with the engine's event types filled in (one list, the server's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api.assets import EVENT_TYPES_MARK, ROOT, Files
from engine.events import EVENT_TYPES
from tests.api.conftest import Api
from tests.helpers import assert_error


@pytest.mark.parametrize(("path", "media_type"), [
    ("/static/spool.js", "text/javascript; charset=utf-8"),
    ("/static/docs.js", "text/javascript; charset=utf-8"),
    ("/static/swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("/static/swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    ("/static/swagger-ui/LICENSE", "text/plain; charset=utf-8"),
    ("/docs", "text/html; charset=utf-8"),
    ("/", "text/html; charset=utf-8"),
    ("/static/console/app.js", "text/javascript; charset=utf-8"),
    ("/static/console/style.css", "text/css; charset=utf-8"),
])
async def test_a_file_has_its_type_an_etag_and_a_policy(
    api: Api, path: str, media_type: str,
) -> None:
    response = await api.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "no-cache"  # revalidated: the ETag answers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await api.client.get(path, headers={"If-None-Match": if_none_match})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
    changed = await api.client.get(path, headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == response.content


async def test_spool_js_is_served_with_the_engines_event_types(api: Api) -> None:
    body = (await api.client.get("/static/spool.js")).text
    assert EVENT_TYPES_MARK.decode() not in body
    found = re.search(r"export const EVENT_TYPES = Object\.freeze\((\[.*?\])\);", body)
    assert found is not None
    assert json.loads(found[1]) == sorted(EVENT_TYPES)
    assert (ROOT / "spool.js").read_bytes().count(EVENT_TYPES_MARK) == 1


async def test_docs_loads_nothing_from_elsewhere(api: Api) -> None:
    body = (await api.client.get("/docs")).text
    assert "/static/swagger-ui/swagger-ui-bundle.js" in body
    assert "http://" not in body and "https://" not in body and "//cdn" not in body
    assert "<script>" not in body  # nothing inline: the policy allows none
    setup = (await api.client.get("/static/docs.js")).text
    assert '"/v1/openapi.json"' in setup and "validatorUrl: null" in setup


@pytest.mark.parametrize("path", [
    "/static/nothing.js", "/static/", "/static/../app.py", "/static/%2e%2e/app.py",
    "/static/swagger-ui", "/static/swagger-ui/../../assets.py",
])
async def test_only_the_files_found_there_are_served(api: Api, path: str) -> None:
    assert_error(await api.client.get(path), 404, "not_found")


async def test_the_pages_are_not_operations_of_the_api(api: Api) -> None:
    document = (await api.client.get("/v1/openapi.json")).json()
    assert "/docs" not in document["paths"] and "/" not in document["paths"]
    assert not [path for path in document["paths"] if path.startswith("/static")]


async def test_the_console_loads_nothing_from_elsewhere(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status_code == 200
    assert page.text == (ROOT / "console" / "index.html").read_text()
    assert '<script type="module" src="/static/console/app.js"></script>' in page.text
    assert "<script>" not in page.text and " style=" not in page.text  # the CSP allows none
    for file in sorted((ROOT / "console").rglob("*.*")):
        served = await api.client.get(f"/static/{file.relative_to(ROOT).as_posix()}")
        assert served.status_code == 200, file
        assert not re.search(r"""(from|src=|href=|url\()\s*["']?(https?:)?//""", served.text), file


def test_a_changed_or_new_file_is_served_as_it_is_now(tmp_path: Path) -> None:
    """What lets a console page be edited and reloaded without restarting the server."""
    (tmp_path / "views").mkdir()
    page = tmp_path / "views" / "page.js"
    page.write_text("export const v = 1;")
    files = Files(tmp_path, rescan_seconds=0)
    first = files.find("views/page.js")
    assert first is not None and first.body == b"export const v = 1;"
    assert files.find("views/page.js") is first  # unchanged: not read again
    page.write_text("export const v = 22;")
    changed = files.find("views/page.js")
    assert changed is not None and changed.body == b"export const v = 22;"
    assert changed.etag != first.etag
    assert files.find("views/new.js") is None
    (tmp_path / "views" / "new.js").write_text("export {};")
    new = files.find("views/new.js")
    assert new is not None and new.media_type == "text/javascript; charset=utf-8"
    page.unlink()
    assert files.find("views/page.js") is None
    assert files.find("../views/new.js") is None and files.find("/views/new.js") is None
