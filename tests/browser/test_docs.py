"""/docs in headless Chromium: Swagger UI renders the app's OpenAPI document from files the
app serves itself; every request the page makes stays on the server's origin, and its console
shows no error (a Content-Security-Policy refusal would be one). A screenshot is kept in
tests/artifacts/docs.png."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Live
from tests.browser.conftest import Watched

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def test_docs_renders_the_operations_from_the_origin_alone(
    live: Live, page: Watched,
) -> None:
    response = await page.page.goto(live.base_url + "/docs")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    # the operations are shown with their ids
    await page.page.get_by_text("create_stream_token", exact=True).wait_for(timeout=60_000)
    assert await page.page.get_by_text("session_stream", exact=True).count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    await page.page.screenshot(path=ARTIFACTS / "docs.png", full_page=False)
    # an operation opens (its schemas and examples rendered: inline styles the CSP must allow)
    await page.page.get_by_text("create_stream_token", exact=True).click()
    await page.page.get_by_text("ttl_seconds").first.wait_for(timeout=60_000)
    await page.page.screenshot(path=ARTIFACTS / "docs-operation.png", full_page=False)
    off_origin = [url for url in page.requests if not url.startswith(live.base_url + "/")
                  and not url.startswith("data:")]
    assert off_origin == []
    assert live.base_url + "/v1/openapi.json" in page.requests
    assert live.base_url + "/static/swagger-ui/swagger-ui-bundle.js" in page.requests
