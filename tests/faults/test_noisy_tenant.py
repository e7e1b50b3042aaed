"""A noisy tenant beside a quiet one: 24 endpoints of one tenant hang for their whole timeout, and
another tenant's healthy endpoint is still delivered, exactly once.

What keeps the quiet tenant going is the per-webhook cap (each hanging endpoint holds at most
WEBHOOKD_PER_WEBHOOK_CONCURRENCY workers), the claim taking every webhook's first delivery before
anyone's second, and the per-tenant share (WEBHOOKD_PER_TENANT_CONCURRENCY, whose own tests assert
it). How long the quiet tenant waited is recorded as a figure, not asserted.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from harness import record
from receivers import Receiver
from support import make_caller

pytestmark = pytest.mark.slow
NOISY_ENDPOINTS = 24
TIMEOUT_MS = 2000


async def test_a_quiet_tenant_is_delivered_while_a_noisy_one_hangs(channel, workers, receiver, database) -> None:
    released = asyncio.Event()

    async def hang(request: web.Request, count: int) -> web.StreamResponse:
        await released.wait()  # past the sender's timeout, until the test ends
        return web.Response(text="late")

    hanging = await Receiver(respond=hang).start()
    noisy, quiet = make_caller(channel, subject="noisy"), make_caller(channel, subject="quiet")
    noisy_ids: list[str] = []
    try:
        policy = wpb.RetryPolicy(timeout_ms=TIMEOUT_MS)
        for n in range(NOISY_ENDPOINTS):
            created = await noisy.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(name=f"hangs {n}", url=hanging.url, event_types=["load.*"], retry_policy=policy)
                )
            )
            noisy_ids.append(created.webhook.id)
        await quiet.CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="healthy", url=receiver.url, event_types=["load.*"]))
        )
        await noisy.PublishEvent(pb.PublishEventRequest(event_type="load.spike"))
        await hanging.wait_for(min(NOISY_ENDPOINTS, 8))  # the noisy tenant's deliveries hold the workers

        started = time.monotonic()
        published = await quiet.PublishEvent(pb.PublishEventRequest(event_type="load.normal"))
        [request] = await receiver.wait_for(1, within=30)
        waited = time.monotonic() - started
        await database.wait_for(
            "SELECT 1 FROM deliveries WHERE event_id = :e AND status = 'succeeded'", bool, e=published.event_id
        )
        busy = len(hanging.received)
    finally:
        released.set()
        for webhook_id in noisy_ids:  # their retries would otherwise go on hanging the session's workers
            await noisy.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook_id))
        await hanging.stop()

    record(
        "noisy tenant beside a quiet one",
        noisy_endpoints=NOISY_ENDPOINTS,
        noisy_requests_in_flight=busy,
        quiet_delivery_waited_s=waited,
    )
    assert request.headers["webhook-id"] == published.event_id
    assert len(receiver.received) == 1  # exactly once: its delivery has succeeded, nothing more comes
