"""Vault stopped while deliveries are due: nothing is sent unsigned, nothing fails, nothing is lost.

A webhook whose secret the workers already hold keeps being delivered (signing secrets are kept by
fingerprint); one whose secret they never read waits for Vault without an attempt being counted.

It needs a Vault it may stop, so it runs a persistent OpenBao of its own (its data survives a restart) with its
own service and pool on a database of its own. A restarted embedded OpenBao listens on a new port, so the pool
is rebuilt with the new address, as a deployment's workers would reconnect to theirs.
"""

from __future__ import annotations

import asyncio

import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook
from webhook_calls import create

from support import Database, running_service
from webhookd.app import Backends, DeliveryWorkers
from webhookd.secrets.embedded import EmbeddedOpenBao

OUTAGE_EVENTS = 5
# Released for later: back in the queue, unleased, due well after now (the pool waits 15 s before asking again).
RELEASED = (
    "SELECT id, status, attempts FROM deliveries"
    " WHERE event_id = ANY(:events) AND lease_token IS NULL AND next_attempt_at > now() + interval '5 seconds'"
)


async def publish(caller, n: int, event_type: str = "inv.created") -> str:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    return (await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type, payload=payload))).event_id


@pytest.mark.slow
async def test_deliveries_wait_out_a_vault_outage_and_none_is_lost(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    vault = EmbeddedOpenBao(tmp_path, mode="persistent")
    addr, token = await asyncio.to_thread(vault.start)
    database = Database(own_database)
    try:
        async with running_service(settings, Backends(own_database, addr, token)) as caller:
            await create(caller, url=receiver.url, event_types=["rfp.*"])  # its secret is read before the outage
            created = await create(caller, url=receiver.url, event_types=["inv.*"])  # its secret is not
            workers = DeliveryWorkers(settings, Backends(own_database, addr, token))
            await workers.start()
            try:
                await publish(caller, 0, "rfp.created")
                await receiver.wait_for(1)
                await asyncio.to_thread(vault.stop)
                during = [await publish(caller, n) for n in range(1, OUTAGE_EVENTS + 1)]
                released = await database.wait_for(RELEASED, lambda rows: len(rows) == OUTAGE_EVENTS, events=during)
                # The webhook whose secret the workers hold is still delivered to, signed.
                await publish(caller, OUTAGE_EVENTS + 1, "rfp.created")
                await receiver.wait_for(2)
            finally:
                await workers.stop()

            assert [(row.status, row.attempts) for row in released] == [("pending", 0)] * OUTAGE_EVENTS
            assert await database.value("SELECT count(*) FROM attempts WHERE event_id = ANY(:e)", e=during) == 0
            assert len(receiver.received) == 2

            addr, token = await asyncio.to_thread(vault.start)
            workers = DeliveryWorkers(settings, Backends(own_database, addr, token))
            await workers.start()
            try:
                # The pool would ask Vault again after 15 s; the test does not wait that long.
                assert await database.make_due(*[row.id for row in released]) == OUTAGE_EVENTS
                arrived = await receiver.wait_for(2 + OUTAGE_EVENTS)
                await database.wait_for(
                    "SELECT 1 FROM deliveries WHERE event_id = ANY(:events) AND status = 'succeeded'",
                    lambda rows: len(rows) == OUTAGE_EVENTS,
                    events=during,
                )
            finally:
                await workers.stop()
    finally:
        await database.close()
        await asyncio.to_thread(vault.stop)

    after = arrived[2:]
    assert sorted(request.headers["webhook-id"] for request in after) == sorted(during)
    signed_with = StandardWebhook(created.signing_secret)
    assert sorted(signed_with.verify(r.body, r.headers)["data"]["n"] for r in after) == list(
        range(1, OUTAGE_EVENTS + 1)
    )
