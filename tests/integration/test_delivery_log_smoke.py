import asyncio

from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb


async def test_follow_streams_backlog_then_live_entries(caller, workers, receiver) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="r", url=receiver.url, event_types=["*"]))
    )
    await caller.PublishEvent(pb.PublishEventRequest(event_type="a.one"))
    await receiver.wait_for(1)
    stream = caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=created.webhook.id, follow=True))
    seen = []

    async def read(count: int) -> None:
        async for response in stream:
            seen.append(response.entry)
            if len(seen) == count:
                return

    first = asyncio.create_task(read(1))
    await asyncio.wait_for(first, 15)
    await caller.PublishEvent(pb.PublishEventRequest(event_type="a.two"))
    await asyncio.wait_for(read(2), 15)
    stream.cancel()
    assert [entry.event_type for entry in seen] == ["a.one", "a.two"]
    assert all(entry.outcome == "succeeded" for entry in seen)
    assert seen[0].cursor != seen[1].cursor
