"""A tenant's writes wake only that tenant's followers: every follower of every tenant read the database
on each attempt written anywhere, and 200 open streams (10 tenants at the cap) under one other tenant's
40 writes a second ran 1,500 reads a second through the server's pool, an unrelated call 30 times slower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_service_pb2 as pb
from test_delivery_log_stream import insert_attempts
from webhook_calls import create_webhook

from log_streams import Tail, until
from support import make_caller
from webhookd.domain.topics import Topic
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


async def test_a_tenants_attempt_wakes_none_of_another_tenants_followers(
    service, channel, receiver, database, monkeypatch
) -> None:
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)  # a follower that reads was woken
    store = service.core.history._store
    reads: dict[str, int] = {}
    read_log = store.read_log

    async def counted(scope: Any, *args: Any, **kwargs: Any) -> Any:
        reads[scope.tenant_id] = reads.get(scope.tenant_id, 0) + 1
        return await read_log(scope, *args, **kwargs)

    monkeypatch.setattr(store, "read_log", counted)
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
