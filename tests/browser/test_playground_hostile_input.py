"""The Playground against what others control: a link's fragment, a tenant's strings, and what a
receiver answers a test event with. Each shows as text; none breaks the page or runs."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

# Each test drives a headless Chromium.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fragment", ["%", "%E0%A4%A", "Webhook.%zz"])
async def test_a_link_with_a_broken_fragment_still_opens_the_page(page: Page, gateway: Any, fragment: str) -> None:
    await page.goto(f"{gateway.url}/playground#{fragment}")

    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await expect(page.locator("#op-tabs .tab[aria-selected='true']")).to_have_text("list")
