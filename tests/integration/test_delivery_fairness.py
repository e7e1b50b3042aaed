"""One slow endpoint cannot occupy the pool: the per-webhook concurrency cap holds, others flow."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from receivers import Receiver


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
