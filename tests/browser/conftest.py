"""Headless Chromium (Debian's ``chromium``, driven by Playwright: never a downloaded
browser) on pages of a live server. Without chromium these tests skip, but not in CI
(``CI`` set), where .ci/run installs it and its absence is a failure.

The server here gives stream tokens no time to resume (``stream_token_resume_seconds=0``): a
stream a page keeps across token expiry is one spool.js renewed, not one the window saved."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from engine.engine import Engine
from engine.settings import Settings
from tests.api.conftest import Live, serving
from tests.api.conftest import api as api  # the in-process client fixture, for the helpers on it


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, stream_token_resume_seconds=0)


@pytest.fixture
async def live(settings: Settings, engine: Engine) -> AsyncIterator[Live]:
    async with serving(engine, settings) as served:
        yield served


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: the browser tests need it in CI (.ci/run "
                        "installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            await browser.close()


class Watched:
    """A page, with every request it made and every error its console showed."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        self._allowed: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def allow(self, error: str) -> None:
        """Console errors holding ``error`` are expected from now on (the browser's own
        report of something the page handles)."""
        self._allowed.append(error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(ok in message.text for ok in self._allowed):
            self.errors.append(f"console: {message.text}")


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[Watched]:
    """A page of its own; the test fails if its console showed an error."""
    context = await chromium.new_context()
    watched = Watched(await context.new_page())
    yield watched
    await context.close()
    assert watched.errors == [], "the page's console showed errors"


# --- the console (api/static/console/) ---------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored
SIZES = ((1280, 800), (390, 844))  # a laptop, a phone
# What Chromium itself logs for an answer the console handles (a refused key, say).
REFUSED = "the server responded with a status of 401"


async def log_in(page: Watched, live: Live, key: str, hash_: str = "#/sessions") -> None:
    """Opens the console at ``hash_`` (at 1280x800) and logs in with ``key`` through the
    form."""
    await page.page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    await page.page.goto(f"{live.base_url}/{hash_}")
    await page.page.locator("input[name=api_key]").fill(key)
    await page.page.get_by_role("button", name="Log in").click()
    await page.page.locator("#nav:not([hidden])").wait_for(timeout=60_000)


async def screenshots(page: Watched, name: str) -> None:
    """``tests/artifacts/console-<name>-<width>x<height>.png`` at each of SIZES, checking the
    page needs no sideways scrolling at any (it is left at the first size)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in SIZES:
        await page.page.set_viewport_size({"width": width, "height": height})
        await page.page.screenshot(path=ARTIFACTS / f"console-{name}-{width}x{height}.png",
                                   full_page=True)
        overflow = await page.page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
    await page.page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})


async def until(page: Watched, condition: str, arg: Any = None) -> Any:
    """Waits for a JavaScript condition in the page (polled); returns its value."""
    handle = await page.page.wait_for_function(condition, arg=arg, polling=50, timeout=60_000)
    return await handle.json_value()
