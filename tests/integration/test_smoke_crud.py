from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb


async def test_create_then_get(caller) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="orders", url="https://example.test/hook"))
    )
    assert created.signing_secret.startswith("whsec_")
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=created.webhook.id))
    assert got.webhook.name == "orders"
