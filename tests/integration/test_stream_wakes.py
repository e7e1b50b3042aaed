"""A tenant's writes wake only that tenant's followers: every follower of every tenant read the database
on each attempt written anywhere, and 200 open streams (10 tenants at the cap) under one other tenant's
40 writes a second ran 1,500 reads a second through the server's pool, an unrelated call 30 times slower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from history_rows import receipt
from test_delivery_log_stream import insert_attempts
from webhook_calls import create_webhook

from log_streams import Tail, until
from support import make_caller
from webhookd.domain.scope import Scope
from webhookd.domain.topics import NAMES_NOTHING, Topic
from webhookd.services import tailing
from webhookd.store.notifications import PostgresNotifications


@pytest.fixture
async def notifications(backends) -> AsyncIterator[PostgresNotifications]:
    opened = PostgresNotifications(backends.database_url)
    opened.start()
    yield opened
    await opened.close()


async def test_a_keyed_subscriber_is_woken_by_notifications_naming_its_key_or_none(notifications) -> None:
    async with (
        notifications.subscribe(Topic.INBOUND) as every,
        notifications.subscribe(Topic.INBOUND, key="tnt_a") as tenant_a,
    ):
        await until(every.is_set)  # listening started: everyone is told once
        every.clear()
        tenant_a.clear()

        notifications.notify(Topic.INBOUND, "tnt_b")
        await until(every.is_set)
        assert not tenant_a.is_set()
        every.clear()

        notifications.notify(Topic.INBOUND, "tnt_a")
        await until(tenant_a.is_set)
        tenant_a.clear()

        # Unnamed, in one burst with a named one: a writer that named nobody may have written anyone's.
        notifications.notify(Topic.INBOUND, "tnt_b")
        notifications.notify(Topic.INBOUND)
        await until(tenant_a.is_set)


async def test_a_subscriber_keyed_names_nothing_is_woken_only_by_notifications_naming_nothing(notifications) -> None:
    # The delivery pool's claimer: named webhooks go to express claims (delivery/pool.py).
    heard: list[str | None] = []
    async with (
        notifications.subscribe(Topic.DELIVERIES, key=NAMES_NOTHING) as unnamed,
        notifications.follow(Topic.DELIVERIES, heard.append),
    ):
        await until(unnamed.is_set)  # listening started: everyone is told once
        unnamed.clear()

        notifications.notify(Topic.DELIVERIES, "whk_a whk_a")
        await until(lambda: heard[-2:] == ["whk_a", "whk_a"])  # a name per delivery, each handed on
        assert not unnamed.is_set()

        notifications.notify(Topic.DELIVERIES)
        await until(unnamed.is_set)


def log_reads_by_tenant(service: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times the delivery log was read for each tenant from now on."""
    store = service.core.history._store
    reads: dict[str, int] = {}
    read_log = store.read_log

    async def counted(scope: Any, *args: Any, **kwargs: Any) -> Any:
        reads[scope.tenant_id] = reads.get(scope.tenant_id, 0) + 1
        return await read_log(scope, *args, **kwargs)

    monkeypatch.setattr(store, "read_log", counted)
    return reads


async def test_a_tenants_attempt_wakes_none_of_another_tenants_followers(
    service, channel, receiver, database, monkeypatch
) -> None:
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)  # a follower that reads was woken
    monkeypatch.setattr(tailing, "IDLE_RECHECK_SECONDS", 3600.0)
    reads = log_reads_by_tenant(service, monkeypatch)
    quiet, busy = make_caller(channel, subject="person_1"), make_caller(channel, subject="person_1")
    hook = await create_webhook(busy, url=receiver.url, event_types=["*"])
    busy_stream = Tail(busy.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
    quiet_stream: Tail | None = None
    try:
        # Heard live: the listener is up, so the quiet stream's subscription wakes it for nothing.
        await until(lambda: service.core.notifications.subscribers(Topic.ATTEMPTS) >= 1)
        await busy.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))
        await busy_stream.wait_for(1)
        quiet_stream = Tail(quiet.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
        await until(lambda: reads.get(quiet.tenant_id, 0) >= 1)  # its backlog, read once
        before = reads[quiet.tenant_id]

        await busy.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))
        await busy_stream.wait_for(2)
        # Then one of its own: the quiet follower reads for it, and read for nothing before.
        async with database.engine.begin() as connection:
            own = await insert_attempts(connection, quiet.tenant_id)
        database.notify(Topic.ATTEMPTS, quiet.tenant_id)
        assert [entry.delivery_id for entry in await quiet_stream.wait_for(1)] == own

        assert reads[quiet.tenant_id] == before + 1
    finally:
        for stream in (busy_stream, quiet_stream):
            if stream is not None:
                await stream.close()


async def test_an_idle_follower_reads_again_only_while_an_entry_is_held_back(
    service, channel, database, monkeypatch
) -> None:
    """Every follower re-read the log each second in case an entry was held back behind a running
    transaction: 200 idle streams ran ~190 reads a second. Now only a follower whose last read held
    an entry back re-reads, and that entry still arrives, unannounced, once the transaction ends."""
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 0.05)
    reads = log_reads_by_tenant(service, monkeypatch)
    idle, held = make_caller(channel, subject="person_1"), make_caller(channel, subject="person_1")
    held_stream = Tail(held.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
    idle_stream: Tail | None = None
    try:
        await until(lambda: reads.get(held.tenant_id, 0) >= 1)
        # Heard live, the listener is up: the idle stream's subscription wakes it for nothing.
        async with database.engine.begin() as connection:
            first = await insert_attempts(connection, held.tenant_id)
        database.notify(Topic.ATTEMPTS, held.tenant_id)
        await held_stream.wait_for(1)
        idle_stream = Tail(idle.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
        await until(lambda: reads.get(idle.tenant_id, 0) >= 1)  # its backlog
        async with database.engine.connect() as other:
            unrelated = await other.begin()
            await other.execute(sa.text("SELECT pg_current_xact_id()"))  # older than the entry: holds it back
            async with database.engine.begin() as connection:
                written = await insert_attempts(connection, held.tenant_id)
            reads_before = reads[held.tenant_id]
            database.notify(Topic.ATTEMPTS, held.tenant_id)
            # Woken, then re-reading for as long as the entry is held back.
            await until(lambda: reads[held.tenant_id] >= reads_before + 10)
            assert len(held_stream.entries) == 1
            idle_reads = reads[idle.tenant_id]
            await unrelated.commit()  # no notification: nothing of the log was written

        assert [entry.delivery_id for entry in await held_stream.wait_for(2)] == [*first, *written]
        assert idle_reads == 1  # its backlog only
    finally:
        for stream in (held_stream, idle_stream):
            if stream is not None:
                await stream.close()


async def test_an_inbound_read_says_when_it_held_a_receipt_back(service, channel, database) -> None:
    """StreamInboundEvents re-reads on the same word: a receipt behind a running transaction is reported."""
    caller = make_caller(channel, subject="person_1")
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
    )
    store = service.core.inbound._store
    target = await store.target(created.webhook.id)
    assert target is not None
    scope = Scope(caller.tenant_id)
    async with database.engine.connect() as other:
        unrelated = await other.begin()
        await other.execute(sa.text("SELECT pg_current_xact_id()"))  # older than the receipt: holds it back
        stored = await store.record(target, receipt("msg_1", datetime.now(UTC)), rate_per_second=1.0, burst=10)
        held = await store.read(scope, webhook_id=None, after=None, limit=10)
        await unrelated.commit()
    settled = await store.read(scope, webhook_id=None, after=None, limit=10)

    assert (held.entries, held.held_back) == ([], True)
    assert ([event.id for event in settled.entries], settled.held_back) == ([stored.receipt_id], False)
