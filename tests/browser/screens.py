"""Screenshots of the Playground at the two widths people read it at, for people to look at."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

# Named in the README; gitignored (test-artifacts/).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


async def screenshot(page: Page, name: str, size: dict[str, int]) -> Path:
    """A full-page PNG of `page` at `size`, as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size(size)
    await page.evaluate("window.scrollTo(0, 0)")
    # Two frames: the layout at the new width is settled before the page's height is measured.
    await page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
