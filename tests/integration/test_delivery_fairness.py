"""One slow endpoint, or one tenant's, cannot occupy the pool: the per-webhook and per-tenant caps
hold, and a quiet webhook's new delivery does not wait behind another webhook's backlog."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook

from log_streams import until
from receivers import Receiver
from support import make_caller
from webhookd.app import Backends, DeliveryWorkers, open_service


class Crowd:
    """A slow handler that records how many requests it was serving at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0
        self.most = 0

    async def respond(self, request: web.Request, count: int) -> web.StreamResponse:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.now -= 1
        return web.Response(text="ok")


@pytest.mark.slow
async def test_a_slow_webhook_stays_under_its_cap_while_another_is_served(caller, workers, receiver, settings) -> None:
    crowd = Crowd(seconds=0.5)
    slow = await Receiver(respond=crowd.respond).start()
    try:
        for name, url, types in (("slow", slow.url, ["slow.*"]), ("fast", receiver.url, ["fast.*"])):
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name=name, url=url, event_types=types))
            )
        for _ in range(12):
            await caller.PublishEvent(pb.PublishEventRequest(event_type="slow.tick"))
        for _ in range(5):
            await caller.PublishEvent(pb.PublishEventRequest(event_type="fast.tick"))

        await receiver.wait_for(5, within=10)
        slow_done_when_fast_finished = len(slow.received)
        await slow.wait_for(12, within=30)
    finally:
        await slow.stop()
    # 12 half-second deliveries at most 4 at a time take at least 1.5 s: the fast webhook did not wait.
    assert slow_done_when_fast_finished < 12
    assert crowd.most <= settings.per_webhook_concurrency
    assert crowd.most > 1  # it does run deliveries of one webhook in parallel, up to the cap


class Hold:
    """A handler that keeps every request waiting until released: endpoints that hang."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.waiting = 0

    async def respond(self, request: web.Request, count: int) -> web.StreamResponse:
        self.waiting += 1
        await self.released.wait()
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def own_pool(settings, backends, own_database, **overrides) -> AsyncIterator[Any]:
    """A service and a delivery pool of their own, on a database no other pool claims from."""
    tuned = settings.with_overrides(**overrides)
    own = Backends(own_database, backends.vault_addr, backends.vault_token)
    service = await open_service(tuned, own)
    workers = DeliveryWorkers(tuned, own)
    await workers.start()
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            yield channel
    finally:
        await workers.stop()
        await service.stop(grace=1.0)


async def test_one_tenants_hanging_endpoints_leave_workers_for_another_tenant(
    settings, backends, own_database, receiver
) -> None:
    hold = Hold()
    hanging = await Receiver(respond=hold.respond).start()
    try:
        async with own_pool(
            settings, backends, own_database, workers=8, per_tenant_concurrency=5, shutdown_grace_seconds=0.1
        ) as channel:
            noisy, quiet = make_caller(channel), make_caller(channel)
            for n in range(10):  # 10 webhooks x 4 per webhook would take every worker, and more
                await create_webhook(noisy, name=f"hang{n}", url=hanging.url, event_types=["tick"])
            await create_webhook(quiet, name="quiet", url=receiver.url, event_types=["tick"])
            for _ in range(5):
                await noisy.PublishEvent(pb.PublishEventRequest(event_type="tick"))
            await until(lambda: hold.waiting == 5)  # the noisy tenant is at its share

            await quiet.PublishEvent(pb.PublishEventRequest(event_type="tick"))
            await receiver.wait_for(1, within=10)  # served while the noisy endpoints still hang

            assert hold.waiting == 5  # and the noisy tenant never took more than its share
            hold.released.set()
    finally:
        hold.released.set()
        await hanging.stop()


async def test_a_quiet_webhooks_new_delivery_goes_before_another_webhooks_backlog(
    settings, backends, own_database, receiver
) -> None:
    hold = Hold()
    busy = await Receiver(respond=hold.respond).start()
    try:
        async with own_pool(settings, backends, own_database, workers=6, shutdown_grace_seconds=0.1) as channel:
            caller = make_caller(channel)
            await create_webhook(caller, name="busy", url=busy.url, event_types=["busy"])
            await create_webhook(caller, name="quiet", url=receiver.url, event_types=["quiet"])
            for _ in range(200):  # a backlog far beyond what one claim looks at from its oldest end
                await caller.PublishEvent(pb.PublishEventRequest(event_type="busy"))
            await until(lambda: hold.waiting == settings.per_webhook_concurrency)

            await caller.PublishEvent(pb.PublishEventRequest(event_type="quiet"))
            await receiver.wait_for(1, within=10)  # while the backlog still waits
            assert hold.waiting == settings.per_webhook_concurrency
    finally:
        hold.released.set()
        await busy.stop()
