"""The SSRF guard through the whole pipeline: with the default policy a loopback target is refused and recorded.

Each address class is covered at the Sender level (test_delivery_http.py, test_ssrf_connect.py); this proves
the pool records a refusal as such. It runs its own service and pool on a database of its own, since the
session pool allows private targets and would deliver these itself.
"""

from __future__ import annotations

from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook

from support import Database, running_service
from webhookd.app import Backends, DeliveryWorkers


async def test_loopback_targets_are_refused_and_recorded_by_the_default_policy(
    settings, backends, own_database, receiver
) -> None:
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    guarded = DeliveryWorkers(settings.with_overrides(allow_private_targets=False), isolated)
    database = Database(own_database)
    async with running_service(settings, isolated) as caller:
        await guarded.start()
        try:
            policy = wpb.RetryPolicy(max_attempts=1)
            by_name = await create_webhook(
                caller, url=f"http://localhost:{receiver.port}/hook", event_types=["*"], retry_policy=policy
            )
            by_address = await create_webhook(caller, url=receiver.url, event_types=["*"], retry_policy=policy)
            published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))
            assert published.deliveries_queued == 2

            attempts = await database.wait_for(
                "SELECT webhook_id, outcome, http_status, error FROM attempts WHERE event_id = :e",
                lambda rows: len(rows) == 2,
                e=published.event_id,
            )
        finally:
            await guarded.stop()
            await database.close()

    assert {row.webhook_id: (row.outcome, row.http_status, row.error) for row in attempts} == {
        by_name.id: ("refused", None, "target refused: localhost is loopback"),
        by_address.id: ("refused", None, "target refused: 127.0.0.1 is loopback"),
    }
    assert receiver.received == []
