import json
from datetime import UTC, datetime

import httpx
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from standardwebhooks.webhooks import Webhook as StandardWebhook


async def test_signed_request_is_stored_and_streamed_to_a_consumer(caller, gateway) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(
            webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND, url="https://ignored.example")
        )
    )
    url = created.webhook.url.replace("http://127.0.0.1:8080", gateway.url)
    body = json.dumps({"type": "order.paid", "data": {"id": 1}})
    now = datetime.now(UTC)
    signature_headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": StandardWebhook(created.signing_secret).sign("msg_1", now, body),
    }
    async with httpx.AsyncClient() as client:
        headers = signature_headers | {"content-type": "application/json"}
        first = await client.post(url, content=body, headers=headers)
        again = await client.post(url, content=body, headers=headers)
        bad = await client.post(url, content=body + " ", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"
    assert bad.status_code == 401
    stream = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(consumer="billing"))
    events = [response.event async for response in stream]
    assert [event.message_id for event in events] == ["msg_1"]
    assert events[0].body == body.encode()
    assert events[0].event_type == "order.paid"
