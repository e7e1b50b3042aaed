"""Tenant and app isolation: the token's tenant (and app, for integration keys) scopes every call."""

from __future__ import annotations

import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook, rpc_error

from support import AuthedStub, make_caller


async def assert_not_found_for(stranger: AuthedStub, webhook: wpb.Webhook) -> None:
    calls = [
        stranger.GetWebhook(pb.GetWebhookRequest(id=webhook.id)),
        stranger.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="stolen"))),
        stranger.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id)),
        stranger.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook.id)),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()


async def test_other_tenant_gets_not_found_and_an_empty_list(channel, caller) -> None:
    webhook = await create_webhook(caller, name="mine")
    stranger = make_caller(channel, subject="person_1")

    await assert_not_found_for(stranger, webhook)
    listed = await stranger.ListWebhooks(pb.ListWebhooksRequest(show_deleted=True))
    assert list(listed.webhooks) == []
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook == webhook


async def test_other_tenant_cannot_undelete_a_deleted_webhook(channel, caller) -> None:
    webhook = await create_webhook(caller)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    stranger = make_caller(channel)
    error = await rpc_error(stranger.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook.id)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))).webhook.is_deleted is True


async def test_app_token_sees_only_its_apps_webhooks(channel, caller) -> None:
    crm = make_caller(channel, tenant_id=caller.tenant_id, subject="svc", app_id="app_crm")
    erp = make_caller(channel, tenant_id=caller.tenant_id, subject="svc", app_id="app_erp")
    human_made = await create_webhook(caller, name="human")
    crm_made = await create_webhook(crm, name="crm")
    erp_made = await create_webhook(erp, name="erp")

    assert [w.id for w in (await crm.ListWebhooks(pb.ListWebhooksRequest())).webhooks] == [crm_made.id]
    assert [w.id for w in (await erp.ListWebhooks(pb.ListWebhooksRequest())).webhooks] == [erp_made.id]
    await assert_not_found_for(crm, human_made)
    await assert_not_found_for(crm, erp_made)
    assert (await crm.GetWebhook(pb.GetWebhookRequest(id=crm_made.id))).webhook.app_id == "app_crm"


async def test_human_token_sees_every_app_of_its_tenant(channel, caller) -> None:
    crm = make_caller(channel, tenant_id=caller.tenant_id, app_id="app_crm")
    human_made = await create_webhook(caller)
    crm_made = await create_webhook(crm)

    listed = await caller.ListWebhooks(pb.ListWebhooksRequest())
    assert [w.id for w in listed.webhooks] == [human_made.id, crm_made.id]
    updated = await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=crm_made.id, name="x")))
    assert updated.webhook.name == "x" and updated.webhook.app_id == "app_crm"


async def test_same_app_id_in_another_tenant_sees_nothing(channel) -> None:
    mine = make_caller(channel, app_id="app_crm")
    theirs = make_caller(channel, app_id="app_crm")
    webhook = await create_webhook(mine)
    await assert_not_found_for(theirs, webhook)
    assert list((await theirs.ListWebhooks(pb.ListWebhooksRequest())).webhooks) == []
