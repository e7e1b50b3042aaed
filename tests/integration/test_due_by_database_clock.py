"""A delivery queued to go now is due by the database's clock, the one the claim compares with, not by
the clock of the process that queued it: a process whose clock runs ahead of the database's would
otherwise hold every delivery it queues back by as long. Each test writes as a process whose clock is
ten minutes ahead, and the claim takes the delivery at once. A retry is due its backoff after the
database's now, whichever way the worker's clock is off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from support import running_service
from webhookd.app import Backends
from webhookd.domain import ids
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.events import NewEvent, Published
from webhookd.domain.lifecycle import LifecycleChange, operational_event_type
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import LogKind, Outcome
from webhookd.ports import utc_now
from webhookd.store import events as event_sql
from webhookd.store.database import Database
from webhookd.store.events import EventStore
from webhookd.store.history import HistoryStore
from webhookd.store.lifecycle import LifecycleStore
from webhookd.store.stranded_held import release_stranded
from webhookd.store.webhooks import WebhookStore

AHEAD = timedelta(minutes=10)
CAPS = {"per_webhook": 10, "per_tenant": 10}


@pytest.fixture
async def own_pool(own_database: str) -> AsyncIterator[Database]:
    """A pool of the store's own on `own_database`, for writes by hand."""
    opened = Database(own_database, size=2)
    await opened.open()
    yield opened
    await opened.close()


async def new_webhooks(settings, backends, own_database, *event_types: str) -> tuple[Scope, list[str]]:
    """A tenant's webhooks on `own_database`, made through the API, one per event type subscribed to;
    their scope and ids."""
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        webhook_ids = []
        for event_type in event_types:
            webhook = wpb.Webhook(name=event_type, url="http://127.0.0.1:9/hook", event_types=[event_type])
            webhook_ids.append((await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))).webhook.id)
    return Scope(caller.tenant_id), webhook_ids


async def new_webhook(settings, backends, own_database) -> tuple[Scope, str]:
    scope, [webhook_id] = await new_webhooks(settings, backends, own_database, "*")
    return scope, webhook_id


async def publish(database: Database, scope: Scope, webhook_id: str, *, at: datetime) -> Published:
    """A publish to the webhook by a process whose clock reads `at`."""
    event = NewEvent(
        id=ids.new_id(ids.EVENT_PREFIX),
        event_type="clock.tick",
        body=b'{"type":"clock.tick","data":{}}',
        idempotency_key=None,
        target_webhook_id=webhook_id,
        created_at=at,
    )
    return await EventStore(database).publish(scope, event, ["*"])


async def publish_ahead(database: Database, scope: Scope, webhook_id: str) -> None:
    """A publish to the webhook by a process whose clock is AHEAD of the database's."""
    assert (await publish(database, scope, webhook_id, at=utc_now() + AHEAD)).deliveries_queued == 1


async def hold_one(database: Database, scope: Scope, webhook_id: str) -> None:
    """The webhook paused, and one delivery held for it."""
    await database.execute("UPDATE webhooks SET paused_at = now() WHERE id = %(id)s", {"id": webhook_id})
    assert (await publish(database, scope, webhook_id, at=utc_now())).deliveries_held == 1


@pytest.mark.parametrize("copied", [False, True], ids=["inserted", "copied"])
async def test_a_published_delivery_is_due_at_once(
    settings, backends, own_database, own_pool, delivery_store, monkeypatch, copied
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    if copied:
        monkeypatch.setattr(event_sql, "COPY_THRESHOLD", 0)  # the large fan-outs' COPY, for one target
    await publish_ahead(own_pool, scope, webhook_id)

    claimed = await delivery_store.claim_named([webhook_id], **CAPS)

    assert [delivery.webhook_id for delivery in claimed] == [webhook_id]


async def test_a_redelivered_delivery_is_due_at_once(
    settings, backends, own_database, own_pool, delivery_store
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    await publish_ahead(own_pool, scope, webhook_id)
    [first] = await delivery_store.claim_named([webhook_id], **CAPS)
    done = AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", False, None, utc_now())
    await delivery_store.record([(first, done)])

    await HistoryStore(own_pool).redeliver(scope, first.delivery_id, now=utc_now() + AHEAD)
    again = await delivery_store.claim_named([webhook_id], **CAPS)

    assert [delivery.delivery_id for delivery in again] == [first.delivery_id]


async def test_a_resume_releases_held_deliveries_due_at_once(
    settings, backends, own_database, own_pool, delivery_store
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    await hold_one(own_pool, scope, webhook_id)

    note = LifecycleChange(LogKind.RESUMED, webhook_id, utc_now() + AHEAD)
    await WebhookStore(own_pool).resume(scope, webhook_id, person_id=None, note=note, discard_held=False)
    claimed = await delivery_store.claim_named([webhook_id], **CAPS)

    assert [delivery.webhook_id for delivery in claimed] == [webhook_id]


async def test_an_operational_event_is_due_at_once(settings, backends, own_database, own_pool, delivery_store) -> None:
    recovered = operational_event_type(LogKind.RECOVERED)
    scope, [changed, watching] = await new_webhooks(settings, backends, own_database, "*", recovered)

    note = LifecycleChange(LogKind.RECOVERED, changed, utc_now() + AHEAD)
    assert await LifecycleStore(own_pool).record(scope, note) == 1
    claimed = await delivery_store.claim_named([watching], **CAPS)

    assert [delivery.webhook_id for delivery in claimed] == [watching]


async def test_a_stranded_held_delivery_is_due_at_once(
    settings, backends, own_database, own_pool, delivery_store
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    await hold_one(own_pool, scope, webhook_id)
    # Resumed by a process of an older release, which left its held delivery behind.
    await own_pool.execute("UPDATE webhooks SET paused_at = NULL WHERE id = %(id)s", {"id": webhook_id})

    assert await release_stranded(own_pool, now=utc_now() + AHEAD) == {webhook_id: 1}
    claimed = await delivery_store.claim_named([webhook_id], **CAPS)

    assert [delivery.webhook_id for delivery in claimed] == [webhook_id]


async def test_a_release_and_the_next_due_time_go_by_the_database_clock(
    settings, backends, own_database, own_pool, delivery_store
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    assert await delivery_store.next_due_in() is None  # nothing pending
    await publish_ahead(own_pool, scope, webhook_id)
    assert await delivery_store.next_due_in() <= timedelta(0)  # due now, though published "ahead"
    [claimed] = await delivery_store.claim_named([webhook_id], **CAPS)

    await delivery_store.release(claimed, after=timedelta(0))
    [again] = await delivery_store.claim_named([webhook_id], **CAPS)
    await delivery_store.release(again, after=AHEAD)

    assert again.delivery_id == claimed.delivery_id
    assert await delivery_store.claim_named([webhook_id], **CAPS) == []
    # AHEAD from the release, less the moments since.
    assert AHEAD - timedelta(minutes=1) < await delivery_store.next_due_in() <= AHEAD


@pytest.mark.parametrize("skew", [-AHEAD, AHEAD], ids=["worker-behind", "worker-ahead"])
async def test_a_retry_is_due_its_backoff_after_the_database_now(
    settings, backends, own_database, own_pool, delivery_store, skew
) -> None:
    scope, webhook_id = await new_webhook(settings, backends, own_database)
    await publish(own_pool, scope, webhook_id, at=utc_now())
    [claimed] = await delivery_store.claim_named([webhook_id], **CAPS)
    backoff = timedelta(minutes=5)
    worker_now = utc_now() + skew
    failed = AttemptRecord(Outcome.FAILED, 500, 5, "HTTP 500", "", False, worker_now + backoff, worker_now)

    assert (await delivery_store.record([(claimed, failed)])).kept == [True]

    # Behind, the retry came due at once; ahead, ten minutes late.
    assert await delivery_store.claim_named([webhook_id], **CAPS) == []
    assert backoff - timedelta(minutes=1) < await delivery_store.next_due_in() <= backoff
    # The log shows the time the claim goes by.
    logged = await own_pool.fetch_one(
        "SELECT a.next_attempt_at = d.next_attempt_at FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE a.delivery_id = %(id)s",
        {"id": claimed.delivery_id},
    )
    assert logged == (True,)
