"""A publish wakes the workers itself: its NOTIFY follows its COMMIT on the same connection
(store/events.py), naming the webhooks of its pending deliveries when they are few. Heard on a
database of the test's own, so no other test's publishes are in between."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from support import AuthedStub, running_service
from webhookd.app import Backends
from webhookd.domain.topics import NAMED_WEBHOOKS_MAX, Topic
from webhookd.store import events as store_events
from webhookd.store.conninfo import conninfo

HEARD_WITHIN_SECONDS = 10.0


@pytest.fixture
async def caller(settings, backends, own_database) -> AsyncIterator[AuthedStub]:
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as stub:
        yield stub


@pytest.fixture
async def listener(own_database) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as connection:
        await connection.execute(f"LISTEN {Topic.DELIVERIES.value}")
        yield connection


async def next_payload(listener: psycopg.AsyncConnection) -> str:
    async for notice in listener.notifies(timeout=HEARD_WITHIN_SECONDS, stop_after=1):
        return notice.payload
    raise AssertionError(f"no deliveries notification within {HEARD_WITHIN_SECONDS} s")


async def webhook(caller: AuthedStub, name: str, **fields) -> str:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(
            webhook=wpb.Webhook(name=name, url="http://127.0.0.1:9/hook", event_types=["rfp.*"], **fields)
        )
    )
    return str(created.webhook.id)


def event(**fields) -> pb.PublishEventRequest:
    payload = struct_pb2.Struct()
    payload.update({"n": 1})
    return pb.PublishEventRequest(event_type="rfp.created", payload=payload, **fields)


async def test_it_names_the_webhooks_of_its_pending_deliveries(caller, listener) -> None:
    first, second = await webhook(caller, "first"), await webhook(caller, "second")
    await webhook(caller, "off", enabled=False)  # skipped: nothing to wake anyone for

    await caller.PublishEvent(event())

    assert sorted((await next_payload(listener)).split()) == sorted([first, second])


async def test_a_duplicate_wakes_nobody(caller, listener) -> None:
    only = await webhook(caller, "only")
    await caller.PublishEvent(event(idempotency_key="order-1", webhook_id=only))
    assert await next_payload(listener) == only
    marker = await webhook(caller, "marker")

    again = await caller.PublishEvent(event(idempotency_key="order-1", webhook_id=only))
    await caller.PublishEvent(event(webhook_id=marker))

    assert again.duplicate
    # The next one heard is the marker's: a notification for the duplicate would have come first.
    assert await next_payload(listener) == marker


async def test_a_wide_fan_out_by_copy_wakes_them_without_names(caller, listener, monkeypatch) -> None:
    for n in range(NAMED_WEBHOOKS_MAX + 1):
        await webhook(caller, f"wide-{n}")
    monkeypatch.setattr(store_events, "COPY_THRESHOLD", 0)

    published = await caller.PublishEvent(event())

    assert published.deliveries_queued == NAMED_WEBHOOKS_MAX + 1
    assert await next_payload(listener) == ""
