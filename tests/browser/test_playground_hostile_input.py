"""The Playground against what others control: a link's fragment, a tenant's strings, and what a
receiver answers a test event with. Each shows as text; none breaks the page or runs."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from playwright.async_api import Page, expect

from receivers import Receiver
from support import AuthedStub

# Each test drives a headless Chromium.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fragment", ["%", "%E0%A4%A", "Webhook.%zz"])
async def test_a_link_with_a_broken_fragment_still_opens_the_page(page: Page, gateway: Any, fragment: str) -> None:
    await page.goto(f"{gateway.url}/playground#{fragment}")

    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await expect(page.locator("#op-tabs .tab[aria-selected='true']")).to_have_text("list")


MARKUP = '<img id="injected-img" src="x" onerror="window.pwned = 1"><b id="injected">bold</b>'


async def test_a_tenants_strings_and_a_receivers_answer_show_as_text(
    page: Page, gateway: Any, caller: AuthedStub, receiver: Receiver
) -> None:
    receiver.respond = markup_answer
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(
            webhook=wpb.Webhook(name=MARKUP, tags=["<b id=injected>t</b>"], url=receiver.url, event_types=["rfp.*"])
        )
    )
    await page.goto(f"{gateway.url}/playground")
    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await page.locator("#token").fill(caller.token)

    # The console: GetWebhook's answer carries the name and a tag.
    await page.locator("#tab-get").click()
    await page.locator("#op-form [name='id']").fill(created.webhook.id)
    await page.locator("#send").click()
    await expect(page.locator("#response-status")).to_have_text("200 OK")
    await expect(page.locator("#response-body")).to_contain_text('id=\\"injected\\"')
    # The log panel: a test event, whose result quotes the receiver's answer, and its log entry.
    await page.locator("#log-webhook").fill(created.webhook.id)
    await page.locator("#log-connect").click()
    await expect(page.locator("#log-state")).to_have_attribute("data-state", "live")
    await page.locator("#test-send").click()
    await expect(page.locator("#test-result")).to_contain_text('<b id="injected">bold</b>')
    await expect(page.locator("#log-entries tr.entry")).to_have_count(1, timeout=15_000)

    assert await page.locator("#injected, #injected-img").count() == 0
    assert await page.evaluate("() => window.pwned") is None
    await page.locator("#log-disconnect").click()


async def markup_answer(request: web.Request, count: int) -> web.StreamResponse:
    return web.Response(status=500, text=MARKUP, content_type="text/html", headers={"X-Note": MARKUP})
