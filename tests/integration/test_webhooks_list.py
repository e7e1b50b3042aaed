"""ListWebhooks: soft-deleted rows, keyset pagination with tamper-evident tokens, and every filter."""

from __future__ import annotations

import grpc
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook, field_violations, rpc_error

from support import AuthedStub, make_caller


async def listed_ids(caller: AuthedStub, **filters: object) -> list[str]:
    response = await caller.ListWebhooks(pb.ListWebhooksRequest(**filters))
    assert response.next_page_token == ""
    return [webhook.id for webhook in response.webhooks]


async def test_list_returns_the_tenants_webhooks_in_creation_order(caller) -> None:
    ids = [(await create_webhook(caller, name=f"hook {n}")).id for n in range(3)]
    response = await caller.ListWebhooks(pb.ListWebhooksRequest())
    assert [w.id for w in response.webhooks] == ids
    assert response.webhooks[0].name == "hook 0" and response.next_page_token == ""


async def test_list_of_a_new_tenant_is_empty(caller) -> None:
    assert await listed_ids(caller) == []


async def test_list_leaves_out_deleted_webhooks_unless_show_deleted(caller) -> None:
    kept = await create_webhook(caller)
    gone = await create_webhook(caller)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=gone.id))

    assert await listed_ids(caller) == [kept.id]
    assert await listed_ids(caller, show_deleted=True) == [kept.id, gone.id]
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=gone.id))
    assert got.webhook.is_deleted is True


@pytest.mark.parametrize(("count", "page_size"), [(7, 3), (6, 3), (2, 5)])
async def test_pagination_returns_every_webhook_once_in_order(caller, count: int, page_size: int) -> None:
    ids = [(await create_webhook(caller, name=f"hook {n}")).id for n in range(count)]
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await caller.ListWebhooks(pb.ListWebhooksRequest(page_size=page_size, page_token=token))
        pages += 1
        assert len(page.webhooks) <= page_size
        seen += [w.id for w in page.webhooks]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    assert pages == -(-count // page_size)


async def first_page_token(caller: AuthedStub, **filters: object) -> str:
    for n in range(3):
        await create_webhook(caller, name=f"hook {n}")
    page = await caller.ListWebhooks(pb.ListWebhooksRequest(page_size=1, **filters))
    assert page.next_page_token
    return page.next_page_token


async def page_token_error(caller: AuthedStub, token: str, **filters: object) -> dict[str, str]:
    error = await rpc_error(caller.ListWebhooks(pb.ListWebhooksRequest(page_size=1, page_token=token, **filters)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    return field_violations(error)


async def test_tampered_page_token_is_invalid(caller) -> None:
    token = await first_page_token(caller)
    # Flip characters across the MAC and the payload; any change must be refused.
    for index in (0, len(token) // 2, len(token) - 2):
        flipped = "A" if token[index] != "A" else "B"
        tampered = token[:index] + flipped + token[index + 1 :]
        assert list(await page_token_error(caller, tampered)) == ["page_token"]


async def test_garbage_page_token_is_invalid(caller) -> None:
    assert list(await page_token_error(caller, "not-a-token!")) == ["page_token"]


async def test_page_token_reused_with_other_filters_is_invalid(caller) -> None:
    token = await first_page_token(caller, name="hook")
    assert list(await page_token_error(caller, token, name="other")) == ["page_token"]
    assert list(await page_token_error(caller, token)) == ["page_token"]
    assert list(await page_token_error(caller, token, name="hook", show_deleted=True)) == ["page_token"]
    page = await caller.ListWebhooks(pb.ListWebhooksRequest(page_size=1, page_token=token, name="hook"))
    assert len(page.webhooks) == 1


async def test_page_token_of_another_tenant_is_invalid(channel, caller) -> None:
    token = await first_page_token(caller)
    stranger = make_caller(channel)
    assert list(await page_token_error(stranger, token)) == ["page_token"]


async def test_filter_by_direction(caller) -> None:
    outbound = await create_webhook(caller)
    inbound = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND)
    assert await listed_ids(caller, direction=wpb.DIRECTION_OUTBOUND) == [outbound.id]
    assert await listed_ids(caller, direction=wpb.DIRECTION_INBOUND) == [inbound.id]
    assert await listed_ids(caller) == [outbound.id, inbound.id]


async def test_filter_by_enabled(caller) -> None:
    on = await create_webhook(caller)
    off = await create_webhook(caller, enabled=False)
    assert await listed_ids(caller, enabled=True) == [on.id]
    assert await listed_ids(caller, enabled=False) == [off.id]
    assert await listed_ids(caller) == [on.id, off.id]


async def test_filter_by_event_type_matches_exact_prefix_and_wildcard_subscriptions(caller) -> None:
    prefix = await create_webhook(caller, event_types=["rfp.*"])
    everything = await create_webhook(caller, event_types=["*"])
    exact = await create_webhook(caller, event_types=["invoice.paid", "rfp.created"])
    await create_webhook(caller, event_types=["invoice.*"])
    await create_webhook(caller, event_types=["rfp.updated", "rfpx.created"])

    assert await listed_ids(caller, event_type="rfp.created") == [prefix.id, everything.id, exact.id]


async def test_filter_by_connector_application_and_tag(caller) -> None:
    tagged = await create_webhook(caller, connector_id="con_1", application_id="app_1", tags=["crm", "eu"])
    await create_webhook(caller, connector_id="con_2", application_id="app_2", tags=["erp"])
    assert await listed_ids(caller, connector_id="con_1") == [tagged.id]
    assert await listed_ids(caller, application_id="app_1") == [tagged.id]
    assert await listed_ids(caller, tag="eu") == [tagged.id]
    assert await listed_ids(caller, tag="e") == []


async def test_filter_by_name_is_a_case_insensitive_contains(caller) -> None:
    orders = await create_webhook(caller, name="Orders to ERP")
    audit = await create_webhook(caller, name="audit 100% of orders")
    await create_webhook(caller, name="Invoices")
    assert await listed_ids(caller, name="ORDERS") == [orders.id, audit.id]
    assert await listed_ids(caller, name="to erp") == [orders.id]
    # LIKE wildcards in the filter are plain text.
    assert await listed_ids(caller, name="100%") == [audit.id]
    assert await listed_ids(caller, name="_") == []


async def test_filters_combine_with_and(caller) -> None:
    match = await create_webhook(caller, name="crm hook", tags=["crm"], event_types=["rfp.*"])
    await create_webhook(caller, name="crm hook", tags=["crm"], enabled=False)
    await create_webhook(caller, name="crm hook", tags=["erp"])
    assert await listed_ids(caller, name="crm", tag="crm", enabled=True, event_type="rfp.created") == [match.id]
