"""GetWebhook answers from a per-process cache: what a write changes is seen at once in the writing
process and, through a notification, in every other; `cache-control: no-cache` reads the database."""

from __future__ import annotations

import asyncio
import time

import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2
from webhook_calls import create_webhook, rpc_error

from support import FRESH_READ, make_caller
from webhookd.app import open_service
from webhookd.ports import Topic


async def get(caller, webhook_id: str, *metadata: tuple[str, str]) -> wpb.Webhook:
    request = pb.GetWebhookRequest(id=webhook_id)
    return (await caller.GetWebhook(request, metadata=(*caller.metadata, *metadata))).webhook


async def eventually(read, condition, *, within: float = 2.0):
    """Reads until `condition(value)` holds, bounded well inside the cache's time-to-live (5 s), so only
    the notification can make it hold."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if condition(value):
            return value
        assert time.monotonic() < deadline, f"not reached within {within}s; last: {value}"
        await asyncio.sleep(0.02)


async def test_a_row_changed_behind_the_service_is_read_fresh_only_when_asked(caller, database) -> None:
    webhook = await create_webhook(caller, name="before")
    await get(caller, webhook.id)  # cached now
    await database.execute("UPDATE webhooks SET name = 'behind' WHERE id = :id", id=webhook.id)

    cached = await get(caller, webhook.id)
    fresh = await get(caller, webhook.id, FRESH_READ)

    assert (cached.name, fresh.name) == ("before", "behind")


async def test_a_write_in_another_process_reaches_this_processs_cache(caller, settings, backends) -> None:
    webhook = await create_webhook(caller, name="before")
    assert (await get(caller, webhook.id)).name == "before"  # cached here

    # Another server process writes, through its own service on the same database.
    second = await open_service(settings, backends)
    try:
        async with grpc.aio.insecure_channel(second.grpc_target) as channel:
            writer = make_caller(channel, tenant_id=caller.tenant_id)
            renamed = wpb.Webhook(id=webhook.id, name="after")
            await writer.UpdateWebhook(
                pb.UpdateWebhookRequest(webhook=renamed, update_mask=field_mask_pb2.FieldMask(paths=["name"]))
            )
    finally:
        await second.stop(grace=1.0)

    seen = await eventually(lambda: get(caller, webhook.id), lambda got: got.name == "after")
    assert seen.version == webhook.version + 1


async def test_statistics_written_by_a_worker_are_not_served_stale(caller, service, database) -> None:
    webhook = await create_webhook(caller)
    assert (await get(caller, webhook.id)).consecutive_failures == 0  # cached here
    await database.execute("UPDATE webhooks SET consecutive_failures = 3 WHERE id = :id", id=webhook.id)
    # What the attempt recorder sends for each webhook whose statistics it changed.
    database.notify(Topic.WEBHOOKS, webhook.id)

    seen = await eventually(lambda: get(caller, webhook.id), lambda got: got.consecutive_failures == 3)
    assert seen.version == webhook.version


async def test_another_tenants_cached_webhook_is_not_found(channel, caller) -> None:
    webhook = await create_webhook(caller)
    await get(caller, webhook.id)  # cached here, under its tenant

    error = await rpc_error(make_caller(channel).GetWebhook(pb.GetWebhookRequest(id=webhook.id)))

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_another_apps_cached_webhook_is_not_found(channel) -> None:
    tenant = make_caller(channel)
    app_one = make_caller(channel, tenant_id=tenant.tenant_id, app_id="app_1")
    webhook = await create_webhook(app_one)
    await get(app_one, webhook.id)

    error = await rpc_error(
        make_caller(channel, tenant_id=tenant.tenant_id, app_id="app_2").GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (await get(tenant, webhook.id)).id == webhook.id  # the tenant's person sees every app's
