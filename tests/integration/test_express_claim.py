"""The express claim in SQL (store/deliveries.py `claim_named`): only the named webhooks' oldest due
delivery, by the claim's rules and caps, on a database of the test's own (the session's workers
never claim from it)."""

from __future__ import annotations

import asyncio
import time

import psycopg
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from support import running_service
from webhookd.app import Backends
from webhookd.store.conninfo import conninfo
from webhookd.store.deliveries import _LOCK, _QUEUE_AND_LOCK, CLAIM_LOCK_ID, QUEUE_CLAIM_LOCK_ID

WAITING_FOR_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def webhooks_with(settings, backends, own_database, counts: dict[str, int], **fields) -> dict[str, list[str]]:
    """One tenant's webhooks by name, each with `counts[name]` events published to it alone, in
    order; the events' ids per webhook name."""
    events: dict[str, list[str]] = {}
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        for name, count in counts.items():
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(name=name, url="http://127.0.0.1:9/hook", event_types=["*"], **fields)
                )
            )
            events[created.webhook.id] = []
            for n in range(count):
                payload = struct_pb2.Struct()
                payload.update({"n": n})
                request = pb.PublishEventRequest(event_type="load.tick", payload=payload, webhook_id=created.webhook.id)
                events[created.webhook.id].append((await caller.PublishEvent(request)).event_id)
    return events


async def test_it_takes_only_the_named_webhooks_oldest_due_delivery(
    settings, backends, own_database, delivery_store
) -> None:
    events = await webhooks_with(settings, backends, own_database, {"named": 3, "other": 2})
    named, other = list(events)

    claimed = await delivery_store.claim_named([named], per_webhook=10, per_tenant=10)
    again = await delivery_store.claim_named([named], per_webhook=10, per_tenant=10)

    assert [(c.webhook_id, c.event_id) for c in claimed] == [(named, events[named][0])]
    assert [(c.webhook_id, c.event_id) for c in again] == [(named, events[named][1])]
    # The rest of the queue is still there for the claim.
    rest = await delivery_store.claim(10, per_webhook=10, per_tenant=10)
    assert sorted(c.event_id for c in rest) == sorted([events[named][2], *events[other]])


async def test_it_keeps_to_the_webhook_and_tenant_caps(settings, backends, own_database, delivery_store) -> None:
    events = await webhooks_with(settings, backends, own_database, {"first": 2, "second": 1})
    first, second = list(events)
    [taken] = await delivery_store.claim_named([first], per_webhook=1, per_tenant=10)

    assert await delivery_store.claim_named([first], per_webhook=1, per_tenant=10) == []  # its one place is taken
    assert await delivery_store.claim_named([second], per_webhook=1, per_tenant=1) == []  # so is the tenant's
    [other] = await delivery_store.claim_named([first, second], per_webhook=1, per_tenant=2)
    assert taken.webhook_id == first and other.webhook_id == second


async def test_a_fifo_webhook_gets_its_head_and_nothing_more_while_it_runs(
    settings, backends, own_database, delivery_store
) -> None:
    events = await webhooks_with(settings, backends, own_database, {"ordered": 2}, ordering=wpb.ORDERING_FIFO)
    [webhook_id] = events

    [head] = await delivery_store.claim_named([webhook_id], per_webhook=10, per_tenant=10)

    assert head.fifo and head.event_id == events[webhook_id][0]
    assert await delivery_store.claim_named([webhook_id], per_webhook=10, per_tenant=10) == []


async def until_waiting(connection: psycopg.AsyncConnection, count: int) -> None:
    """Until `count` sessions of this database wait for an advisory lock (within 10 s)."""
    deadline = time.monotonic() + 10
    while (await (await connection.execute(WAITING_FOR_LOCKS)).fetchone())[0] != count:
        assert time.monotonic() < deadline, f"never {count} waiting for a lock"
        await asyncio.sleep(0.01)


async def test_an_express_claim_waits_for_the_claim_running_not_for_the_claims_queued_behind_it(
    settings, backends, own_database, delivery_store
) -> None:
    events = await webhooks_with(settings, backends, own_database, {"quiet": 1})
    [webhook_id] = events
    async with (
        await psycopg.AsyncConnection.connect(conninfo(own_database)) as running,
        await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as looking,
    ):
        # A claim of the whole queue holds both locks; another process's waits for its turn.
        await running.execute(
            f"SELECT pg_advisory_xact_lock({QUEUE_CLAIM_LOCK_ID}), pg_advisory_xact_lock({CLAIM_LOCK_ID})"
        )
        queued = asyncio.create_task(delivery_store.claim(10, per_webhook=10, per_tenant=10))
        await until_waiting(looking, 1)
        express = asyncio.create_task(delivery_store.claim_named([webhook_id], per_webhook=10, per_tenant=10))
        await until_waiting(looking, 2)
        await running.rollback()
        by_express, by_queued = await express, await queued

    assert [claimed.event_id for claimed in by_express] == events[webhook_id]
    assert by_queued == []


async def test_claims_commit_without_waiting_for_the_disk(backends) -> None:
    """A claim holds the claim lock until its commit ends, so one waiting for its WAL's fsync held up
    every claim behind it; its leases are safe to lose in a crash (the deliveries come due again)."""
    async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as connection:
        for lock in (_LOCK, _QUEUE_AND_LOCK):
            async with connection.transaction():
                await connection.execute(lock)
                inside = await (await connection.execute("SHOW synchronous_commit")).fetchone()
            after = await (await connection.execute("SHOW synchronous_commit")).fetchone()
            assert (inside, after) == (("off",), ("on",))  # the claim's transaction alone
