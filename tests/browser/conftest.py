"""Browser fixtures: the system's headless Chromium (Debian `chromium`), driven by Playwright.

Playwright's own browser downloads are never used (`playwright install` is not run anywhere):
`launch(executable_path=CHROMIUM)` drives the Debian package that `tools/chromium.sh` installs
(`make test` runs it). Without it these tests fail, saying how to install it: a suite that skips
them would pass without having looked at the page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright
from screens import DESKTOP

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HAVE_CHROMIUM = CHROMIUM.exists()


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: run tools/chromium.sh (make test does), or apt-get install chromium")
    async with async_playwright() as running:
        yield running


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (no storage shared between tests) at desktop size."""
    context = await browser.new_context(viewport=DESKTOP)
    opened = await context.new_page()
    # A Content-Security-Policy violation or a script error is a failed test, not a log line.
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield opened
    await context.close()
    assert not problems, problems
