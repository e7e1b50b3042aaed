"""The two main paths end to end, one test each: start here when something is broadly broken.

Outbound: a webhook is created, an event published, the receiver gets it signed, and the DeliveryLog
shows the attempt and then a live one. Inbound: a signed request is accepted once and read by a
consumer. The files named after each step (test_delivery_*, test_inbound_*, test_webhooks_*) cover
the details and the failures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook

from log_streams import Tail

PUBLIC_URL = "http://127.0.0.1:8080"  # the session settings' public_url: callback urls start with it


async def test_published_event_reaches_the_receiver_signed_and_shows_in_the_delivery_log(
    caller, workers, receiver
) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="r", url=receiver.url, event_types=["rfp.*"]))
    )
    payload = struct_pb2.Struct()
    payload.update({"rfp_id": 42, "title": "hello"})

    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload))

    assert published.deliveries_queued == 1
    [request] = await receiver.wait_for(1)
    verified = StandardWebhook(created.signing_secret).verify(request.body, request.headers)
    assert verified["data"] == {"rfp_id": 42, "title": "hello"}
    assert json.loads(request.body)["type"] == "rfp.created"
    assert request.headers["webhook-id"] == published.event_id

    # Following the log: the attempt above, then one made while the stream is open.
    tail = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=created.webhook.id, follow=True)))
    try:
        await tail.wait_for(1)
        await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.updated"))
        entries = await tail.wait_for(2)
    finally:
        await tail.close()
    assert [entry.event_type for entry in entries] == ["rfp.created", "rfp.updated"]
    assert all(entry.outcome == "succeeded" for entry in entries)
    assert entries[0].cursor != entries[1].cursor


async def test_signed_inbound_request_is_accepted_once_and_read_by_a_consumer(caller, gateway) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
    )
    url = created.webhook.url.replace(PUBLIC_URL, gateway.url)
    body = json.dumps({"type": "order.paid", "data": {"id": 1}})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": StandardWebhook(created.signing_secret).sign("msg_1", now, body),
        "content-type": "application/json",
    }

    async with httpx.AsyncClient() as client:
        first = await client.post(url, content=body, headers=headers)
        again = await client.post(url, content=body, headers=headers)
        tampered = await client.post(url, content=body + " ", headers=headers)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"
    assert tampered.status_code == 401
    stream = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(consumer="billing"))
    events = [response.event async for response in stream]
    assert [event.message_id for event in events] == ["msg_1"]
    assert events[0].body == body.encode()
    assert events[0].event_type == "order.paid"
