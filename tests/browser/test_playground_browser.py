"""The Playground in a real headless Chromium, against the real gateway, gRPC service and workers.

Each test does what a person would: open /playground, paste a token, fill the forms, press Send,
and read what the page shows. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from playwright.async_api import Browser, Page, Route, expect
from screens import DESKTOP, PHONE, screenshot

from playground_seed import ADDED_FIELDS, seed_schema
from receivers import Receiver, status
from support import JWT_SECRET, AuthedStub, new_tenant_id
from webhookd.app import Gateway, Service
from webhookd.auth.tokens import mint
from webhookd.config import Settings

# Each test drives a headless Chromium.
pytestmark = pytest.mark.slow

STANDARD_TABS = ["list", "get", "create", "update", "delete"]
MASKED = "Bearer ••••••••"


async def open_playground(page: Page, gateway: Any, token: str | None = None) -> None:
    await page.goto(f"{gateway.url}/playground")
    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    if token is not None:
        await page.locator("#token").fill(token)


async def send(page: Page, operation: str, *, body: Any = None, inputs: dict[str, str] | None = None) -> Any:
    """Picks the operation's tab, fills its form, presses Send; returns the status and parsed body."""
    await page.locator(f"#tab-{operation}").click()
    for name, value in (inputs or {}).items():
        control = page.locator(f"#op-form [name='{name}']")
        folded = page.locator("#op-form details", has=page.locator(f"[name='{name}']"))
        if await folded.count() and not await folded.evaluate("d => d.open"):
            await folded.locator("summary").click()
        if await control.evaluate("e => e.tagName") == "SELECT":
            await control.select_option(value)
        else:
            await control.fill(value)
    if body is not None:
        await page.locator("#body").fill(json.dumps(body))
    await page.locator("#send").click()
    status = page.locator("#response-status")
    await expect(status).not_to_have_text("sending…")
    text = await page.locator("#response-body").text_content()
    return (await status.text_content()), json.loads(text or "null")


# ------------------------------------------------------------------------------------ schema


async def test_page_shows_loading_then_every_seed_field(page: Page, gateway: Any) -> None:
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/v1/manifest", hold)
    await page.goto(f"{gateway.url}/playground")
    await expect(page.locator("#manifest-status")).to_have_text("Loading manifest…")
    await expect(page.locator("#manifest-status")).to_be_visible()
    release.set()

    await expect(page.locator("#manifest-status")).to_be_hidden()
    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await expect(page.locator("#resource-path")).to_have_text("/api/v1/integration/webhooks")
    await expect(page.locator("#resource-description")).to_have_text("An outbound webhook endpoint.")
    tabs = await page.locator("#op-tabs .tab").all_text_contents()
    assert tabs[:5] == STANDARD_TABS
    assert {"undelete", "rotate", "resume", "log", "send"} <= set(tabs)

    seed = seed_schema()
    rows = page.locator("#schema-table tbody tr")
    await expect(rows).to_have_count(len(seed) + len(ADDED_FIELDS))
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.field)")
    assert shown == [f.name for f in seed] + list(ADDED_FIELDS)
    for field in seed:
        row = page.locator(f"#schema-table tr[data-field='{field.name}']")
        assert await row.locator(".field-name").text_content() == field.name
        if field.starred:
            assert (await row.locator("td.field").text_content()) == f"{field.name}*"
        # The Type cell reads as the seed's does: `enum` followed by its values.
        type_cell = await row.locator("td.type").text_content()
        assert type_cell == field.type + " | ".join(field.values), field.name
        assert await row.locator(".note").text_content() == field.notes
    # Not `webhookd dev`: no dev token is offered.
    await expect(page.locator("#dev-token")).to_be_hidden()

    await screenshot(page, "playground-desktop", DESKTOP)
    await screenshot(page, "playground-phone", PHONE)


# ------------------------------------------------------------------------------------- forms


async def test_forms_create_list_update_delete_round_trip(page: Page, gateway: Any, caller: AuthedStub) -> None:
    await open_playground(page, gateway, caller.token)
    name = "<b>orders</b>"  # markup in data must show as text

    status, created = await send(
        page,
        "create",
        body={"name": name, "url": "https://example.com/hooks", "event_types": ["rfp.*"]},
    )
    assert status == "200 OK"
    webhook = created["webhook"]
    assert webhook["name"] == name and webhook["tenant_id"] == caller.tenant_id
    assert created["signing_secret"]
    await expect(page.locator("#response-body b")).to_have_count(0)
    request = await page.locator("#request-view").text_content() or ""
    assert request.startswith("POST /api/v1/integration/webhooks\n")
    assert f"Authorization: {MASKED}" in request
    assert caller.token not in request
    await screenshot(page, "playground-create-desktop", DESKTOP)
    await screenshot(page, "playground-create-phone", PHONE)
    await page.set_viewport_size(DESKTOP)

    status, listed = await send(page, "list")
    assert status == "200 OK"
    assert [w["id"] for w in listed["webhooks"]] == [webhook["id"]]

    # The id of the webhook just shown is filled in for the next operation.
    await page.locator("#tab-update").click()
    await expect(page.locator("#op-form [name='webhook.id']")).to_have_value(webhook["id"])
    status, updated = await send(
        page,
        "update",
        body={"name": "orders (EU)", "tags": ["eu"]},
        inputs={"If-Match": f'"{webhook["version"]}"'},
    )
    assert status == "200 OK"
    assert updated["name"] == "orders (EU)" and updated["tags"] == ["eu"]
    assert updated["version"] == webhook["version"] + 1
    assert "etag: " in (await page.locator("#response-headers").text_content() or "")

    status, deleted = await send(page, "delete", inputs={"id": webhook["id"]})
    assert status == "200 OK"
    assert deleted["is_deleted"] is True

    status, listed = await send(page, "list")
    assert listed["webhooks"] == []
    status, listed = await send(page, "list", inputs={"show_deleted": "true"})
    await expect(page.locator("#request-view")).to_contain_text("GET /api/v1/integration/webhooks?show_deleted=true")
    assert [w["id"] for w in listed["webhooks"]] == [webhook["id"]]


async def test_api_errors_are_shown_as_the_api_sends_them(page: Page, gateway: Any, caller: AuthedStub) -> None:
    await open_playground(page, gateway)
    status, body = await send(page, "list")
    assert status == "401 Unauthorized"
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert "no Authorization header" in (await page.locator("#request-view").text_content() or "")

    await page.locator("#token").fill(caller.token)
    status, body = await send(page, "create", body={"name": "bad", "url": "not a url"})
    assert status == "400 Bad Request"
    error = body["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    violations = [v for d in error["details"] for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == ["webhook.url"]
    shown = page.locator("#response-violations")
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text("INVALID_ARGUMENT")
    await expect(shown.locator("code")).to_have_text(["webhook.url"])
    await expect(page.locator("#response-status")).to_have_attribute("data-kind", "client")

    # A body that is not JSON is caught before anything is sent.
    await page.locator("#body").fill("{not json")
    await page.locator("#send").click()
    await expect(page.locator("#form-error")).to_contain_text("not valid JSON")

    await page.locator("#body").fill(json.dumps({"name": "bad", "url": "not a url"}))
    await page.locator("#send").click()
    await expect(page.locator("#response-status")).to_have_text("400 Bad Request")
    await screenshot(page, "playground-error-desktop", DESKTOP)
    await screenshot(page, "playground-error-phone", PHONE)


# -------------------------------------------------------------------------------- delivery log


async def test_log_panel_shows_a_delivery_made_while_it_is_open(
    page: Page, gateway: Any, caller: AuthedStub, receiver: Receiver, workers: Any
) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="live", url=receiver.url, event_types=["rfp.*"]))
    )
    webhook_id = created.webhook.id
    await open_playground(page, gateway, caller.token)
    await page.locator("#log-webhook").fill(webhook_id)
    await page.locator("#log-connect").click()
    await expect(page.locator("#log-state")).to_have_attribute("data-state", "live")
    await expect(page.locator("#log-entries tr.entry")).to_have_count(0)

    payload = struct_pb2.Struct()
    payload.update({"rfp_id": 7})
    await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload))
    await receiver.wait_for(1)

    entry = page.locator("#log-entries tr.entry")
    await expect(entry).to_have_count(1, timeout=15_000)
    await expect(entry).to_have_attribute("data-outcome", "succeeded")
    await expect(entry.locator(".http-status")).to_have_text("200")
    await expect(entry.locator(".event-type")).to_have_text("rfp.created")
    await expect(entry).to_contain_text(webhook_id)
    await expect(entry).to_contain_text(" ms")
    await screenshot(page, "playground-log-desktop", DESKTOP)
    await screenshot(page, "playground-log-phone", PHONE)

    await page.locator("#log-disconnect").click()
    await expect(page.locator("#log-state")).to_have_attribute("data-state", "idle")
    await expect(page.locator("#log-connect")).to_be_enabled()


async def test_log_panel_sends_a_test_event_and_shows_held_deliveries(
    page: Page, gateway: Any, caller: AuthedStub, receiver: Receiver, database: Any
) -> None:
    receiver.respond = status(503)
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="held", url=receiver.url, event_types=["rfp.*"]))
    )
    webhook_id = created.webhook.id
    await database.execute("UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id", id=webhook_id)
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json='{"n": 1}'))
    assert published.deliveries_held == 1
    await open_playground(page, gateway, caller.token)
    await page.locator("#log-webhook").fill(webhook_id)

    await page.locator("#test-send").click()

    result = page.locator("#test-result")
    await expect(result).to_have_attribute("data-outcome", "failed")
    await expect(result).to_contain_text("HTTP 503")
    await expect(result).to_contain_text("status 503")
    assert len(receiver.received) == 1  # answered synchronously: the POST was made before the result showed

    await page.locator("#log-connect").click()
    await expect(page.locator("#log-state")).to_have_attribute("data-state", "live")
    held = page.locator("#held-entries tr.held")
    await expect(held).to_have_count(1)
    await expect(held).to_have_attribute("data-status", "held")
    await expect(held).to_contain_text("rfp.created")
    # The test event's attempt is in the log like any other.
    await expect(page.locator("#log-entries tr.entry")).to_have_count(1)
    await expect(page.locator("#log-entries tr.entry")).to_have_attribute("data-outcome", "failed")
    await screenshot(page, "playground-held-desktop", DESKTOP)
    await screenshot(page, "playground-held-phone", PHONE)

    # Resuming is a lifecycle entry on the open log, and the held list empties.
    await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=webhook_id, discard_held=True))
    resumed = page.locator("#log-entries tr.entry.lifecycle")
    await expect(resumed).to_have_count(1, timeout=15_000)
    await expect(resumed).to_have_attribute("data-outcome", "webhook.resumed")
    await expect(resumed).to_contain_text("1 held deliveries discarded")
    await expect(held).to_have_count(0)
    await page.locator("#log-disconnect").click()


async def test_log_panel_asks_for_a_token_first(page: Page, gateway: Any) -> None:
    await open_playground(page, gateway)
    await page.locator("#log-connect").click()
    await expect(page.locator("#log-error")).to_contain_text("Paste a token first")


# ------------------------------------------------------------------------------------- token


async def test_token_stays_in_page_memory_unless_remembered(page: Page, gateway: Any, caller: AuthedStub) -> None:
    await open_playground(page, gateway, caller.token)
    await expect(page.locator("#token-info")).to_contain_text(f"tenant {caller.tenant_id}")
    status, _ = await send(page, "list")
    assert status == "200 OK"
    assert caller.token not in page.url
    storage = "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    assert await page.evaluate(storage) == "[[],[]]"

    await page.locator("#remember").check()
    assert caller.token in await page.evaluate(storage)
    await page.reload()
    await expect(page.locator("#remember")).to_be_checked()
    await expect(page.locator("#token")).to_have_value(caller.token)
    await page.locator("#remember").uncheck()
    assert await page.evaluate(storage) == "[[],[]]"
    await page.reload()
    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await expect(page.locator("#token")).to_have_value("")


async def test_a_token_pasted_as_a_header_value_is_sent_as_the_token(
    page: Page, gateway: Any, caller: AuthedStub
) -> None:
    # Copied from a curl line or a terminal: "Bearer eyJ…", wrapped onto a second line.
    middle = len(caller.token) // 2
    await open_playground(page, gateway, f"Bearer {caller.token[:middle]}\n{caller.token[middle:]} ")
    await expect(page.locator("#token-info")).to_contain_text(f"tenant {caller.tenant_id}")

    status, _ = await send(page, "list")

    assert status == "200 OK"


@pytest.fixture
async def dev_gateway(settings: Settings, service: Service) -> AsyncIterator[tuple[str, str]]:
    """A gateway as `webhookd dev` runs it: with a dev token for a tenant of its own."""
    tenant = new_tenant_id()
    running = Gateway(settings, service.local_channel(), dev_token=lambda: mint(JWT_SECRET, tenant_id=tenant))
    await running.start()
    yield f"http://127.0.0.1:{running.port}", tenant
    await running.stop()


async def test_dev_token_button_signs_in_under_webhookd_dev(page: Page, dev_gateway: tuple[str, str]) -> None:
    url, tenant = dev_gateway
    await page.goto(f"{url}/playground")
    button = page.locator("#dev-token")
    await expect(button).to_be_visible()
    await button.click()
    await expect(page.locator("#token-info")).to_contain_text(f"tenant {tenant}")
    status, listed = await send(page, "list")
    assert status == "200 OK" and listed["webhooks"] == []


async def test_a_page_opened_by_another_name_offers_no_dev_token(page: Page, dev_gateway: tuple[str, str]) -> None:
    # Chromium resolves every *.localhost name to loopback, as a DNS-rebinding name would: the token
    # is refused there, so the button that asks for it is not shown.
    url, _ = dev_gateway
    async with page.expect_response(lambda response: response.url.endswith("/playground/config")) as answered:
        await page.goto(f"{url.replace('127.0.0.1', 'rebound.localhost')}/playground")
    assert (await (await answered.value).json())["dev_token"] is False
    await expect(page.locator("#resource-name")).to_have_text("Webhook")
    await expect(page.locator("#dev-token")).to_be_hidden()


async def test_a_browser_on_another_site_cannot_take_the_dev_token(
    browser: Browser, dev_gateway: tuple[str, str]
) -> None:
    url, _ = dev_gateway
    context = await browser.new_context()
    try:
        other = await context.new_page()
        await other.goto(f"{url.replace('127.0.0.1', 'localhost')}/healthz")  # another origin
        outcome = await other.evaluate(
            "async (u) => { try { const r = await fetch(u); return 'read ' + r.status; }"
            " catch (e) { return 'blocked'; } }",
            f"{url}/playground/dev-token",
        )
    finally:
        await context.close()
    assert outcome == "blocked"


# ------------------------------------------------------------------------------------ event types


async def test_the_event_types_page_documents_the_catalog_and_its_forms_use_it(
    page: Page, gateway: Any, caller: AuthedStub
) -> None:
    await open_playground(page, gateway, caller.token)
    await page.locator("#resource-nav [data-resource='EventType']").click()

    await expect(page.locator("#resource-name")).to_have_text("EventType")
    await expect(page.locator("#resource-path")).to_have_text("/api/v1/integration/event-types")
    tabs = await page.locator("#op-tabs .tab").all_text_contents()
    assert tabs == STANDARD_TABS
    shown = await page.locator("#schema-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.field)")
    assert shown[:6] == ["id", "tenant_id", "app_id", "name", "description", "schema"]
    assert "schema_json" not in shown and "example" in shown
    schema_note = await page.locator("#schema-table tr[data-field='schema'] .note").text_content()
    assert "JSON Schema (2020-12)" in (schema_note or "")

    # The create form comes with the documented example, which the server accepts as it is.
    status, created = await send(page, "create")
    assert status == "200 OK", created
    assert created["name"] == "rfp.created" and created["schema"]["required"] == ["rfp_id"]
    status, _ = await send(page, "create", body={"name": "rfp.closed", "schema": {"type": 3}})
    assert status == "400 Bad Request"
    await expect(page.locator("#response-violations code")).to_have_text(["event_type.schema"])
    await screenshot(page, "playground-event-types-desktop", DESKTOP)
