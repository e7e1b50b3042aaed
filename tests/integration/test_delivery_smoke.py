import json

from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook


async def test_published_event_reaches_receiver_signed(caller, workers, receiver) -> None:
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
