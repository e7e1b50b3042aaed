"""The operations use cases on fakes: lifecycle changes recorded by the services, held deliveries on
resume, recover of skipped deliveries, log consumers, events read back, and SendTestEvent."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from fakes import (
    FakeClock,
    FakeEventHistory,
    FakeEvents,
    FakeHistory,
    FakeLifecycle,
    FakeLogConsumers,
    FakeNotifications,
    FakePingBuckets,
    FakePingRecords,
    FakeSecrets,
    FakeSender,
    FakeStreamLeases,
    FakeWebhooks,
    Follower,
    within,
)
from webhookd.domain import signing
from webhookd.domain.deliveries import AttemptResult
from webhookd.domain.errors import FailedPrecondition, Invalid, NotFound, ResourceExhausted, Unavailable
from webhookd.domain.events import EventFilter
from webhookd.domain.history import LogFilter
from webhookd.domain.pings import PING_BURST, PINGS_PER_MINUTE, TOO_MANY_PINGS
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, LogKind, Outcome
from webhookd.domain.webhooks import Direction, Webhook, WebhookSpec
from webhookd.ports import Topic
from webhookd.services.events import Events
from webhookd.services.history import History
from webhookd.services.pings import Pings
from webhookd.services.published_events import PublishedEvents
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.tailing import StreamSlots
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
CRM = Scope("tnt_a", app_id="app_crm")
ERP = Scope("tnt_a", app_id="app_erp")


@pytest.fixture
def history(
    history_store: FakeHistory,
    webhook_store: FakeWebhooks,
    lifecycle: FakeLifecycle,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> History:
    return History(
        history_store,
        webhook_store,
        notifications,
        lifecycle=lifecycle,
        consumers=FakeLogConsumers(),
        stream_slots=StreamSlots(FakeStreamLeases(), 4),
        clock=clock,
    )


async def created(webhooks: Webhooks, scope: Scope = TENANT, **fields: object) -> Webhook:
    spec = WebhookSpec(name="orders", url="https://receiver.example/hooks")
    return (await webhooks.create(scope, replace(spec, **fields), None))[0]  # type: ignore[arg-type]


def kinds(lifecycle: FakeLifecycle) -> list[LogKind]:
    return [change.kind for change in lifecycle.changes]


# -- lifecycle changes the services record ----------------------------------------------------------------


async def test_disabling_and_enabling_are_recorded_and_wake_log_followers(
    webhooks: Webhooks, lifecycle: FakeLifecycle, notifications: FakeNotifications
) -> None:
    webhook = await created(webhooks)

    await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["enabled"], changes_for=lambda _: {"enabled": False}
    )
    await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["name"], changes_for=lambda _: {"name": "x"}
    )
    await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["enabled"], changes_for=lambda _: {"enabled": True}
    )

    assert kinds(lifecycle) == [LogKind.DISABLED, LogKind.ENABLED]  # a rename is no lifecycle change
    assert lifecycle.changes[0].reason == "disabled by its owner"
    assert notifications.count(Topic.ATTEMPTS) == 2


async def test_a_repeated_delete_records_nothing_more(
    webhooks: Webhooks, lifecycle: FakeLifecycle, clock: FakeClock
) -> None:
    webhook = await created(webhooks)

    await webhooks.delete(TENANT, webhook.id, expected_version=None)
    clock.advance(timedelta(seconds=1))
    await webhooks.delete(TENANT, webhook.id, expected_version=None)
    await webhooks.undelete(TENANT, webhook.id)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    assert kinds(lifecycle) == [LogKind.DELETED, LogKind.UNDELETED, LogKind.SECRET_ROTATED]
    assert lifecycle.changes[-1].reason.startswith("the previous secret signs until ")


async def test_operational_deliveries_wake_the_workers(
    webhooks: Webhooks, lifecycle: FakeLifecycle, notifications: FakeNotifications
) -> None:
    webhook = await created(webhooks)
    lifecycle.queued = 1  # a subscriber was queued the webhookd.webhook.deleted event

    await webhooks.delete(TENANT, webhook.id, expected_version=None)

    assert notifications.count(Topic.DELIVERIES) == 1


async def test_resume_releases_the_held_deliveries_in_publish_order(
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    history_store: FakeHistory,
    lifecycle: FakeLifecycle,
    clock: FakeClock,
) -> None:
    webhook = await created(webhooks)
    webhook_store.rows[webhook.id] = replace(webhook_store.rows[webhook.id], paused_at=clock())
    held = [
        history_store.add_delivery(
            TENANT, webhook_id=webhook.id, created_at=clock() + timedelta(seconds=n), status=DeliveryStatus.HELD
        )
        for n in (2, 0, 1)
    ]
    clock.advance(timedelta(minutes=1))

    resumed, settled = await webhooks.resume(TENANT, webhook.id)

    assert resumed.is_active and (settled.released, settled.discarded) == (3, 0)
    rows = [history_store.deliveries[delivery.id].delivery for delivery in held]
    assert {row.status for row in rows} == {DeliveryStatus.PENDING}
    by_due = sorted(rows, key=lambda row: row.next_attempt_at or clock())
    assert [row.created_at for row in by_due] == sorted(row.created_at for row in rows)
    [change] = lifecycle.changes
    assert (change.kind, change.delivery_count, change.reason) == (LogKind.RESUMED, 3, "3 held deliveries released")


async def test_resume_can_discard_the_held_deliveries(
    webhooks: Webhooks, webhook_store: FakeWebhooks, history_store: FakeHistory, clock: FakeClock
) -> None:
    webhook = await created(webhooks)
    webhook_store.rows[webhook.id] = replace(webhook_store.rows[webhook.id], paused_at=clock())
    held = history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.HELD)

    _, settled = await webhooks.resume(TENANT, webhook.id, discard_held=True)

    assert (settled.released, settled.discarded) == (0, 1)
    assert history_store.deliveries[held.id].delivery.status is DeliveryStatus.DISCARDED


async def test_resuming_a_webhook_that_is_not_paused_changes_discards_and_notes_nothing(
    webhooks: Webhooks,
    history_store: FakeHistory,
    lifecycle: FakeLifecycle,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    # Held for a webhook no longer paused (a publish that raced its resume): owed, the held round sends it.
    webhook = await created(webhooks)
    held = history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.HELD)
    noted, woken = len(lifecycle.changes), notifications.count(Topic.DELIVERIES)

    resumed, settled = await webhooks.resume(TENANT, webhook.id, discard_held=True)

    assert resumed == webhook and (settled.released, settled.discarded) == (0, 0)
    assert history_store.deliveries[held.id].delivery.status is DeliveryStatus.HELD
    assert (len(lifecycle.changes), notifications.count(Topic.DELIVERIES)) == (noted, woken)


# -- recover, and the log's consumers ------------------------------------------------------------------


async def test_recover_requeues_skipped_deliveries_only_once_the_webhook_is_enabled(
    webhooks: Webhooks, history: History, history_store: FakeHistory, lifecycle: FakeLifecycle, clock: FakeClock
) -> None:
    webhook = await created(webhooks, enabled=False)
    skipped = history_store.add_delivery(
        TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.SKIPPED
    )
    since = clock() - timedelta(hours=1)

    with pytest.raises(FailedPrecondition):
        await history.recover(TENANT, webhook.id, since=since)
    await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["enabled"], changes_for=lambda _: {"enabled": True}
    )
    queued = await history.recover(TENANT, webhook.id, since=since)

    assert queued == 1
    assert history_store.deliveries[skipped.id].delivery.status is DeliveryStatus.PENDING
    assert lifecycle.changes[-1].kind is LogKind.RECOVERED and lifecycle.changes[-1].delivery_count == 1


async def test_a_consumer_resumes_after_its_ack_and_is_its_apps_own(
    webhooks: Webhooks, history: History, history_store: FakeHistory, clock: FakeClock
) -> None:
    webhook = await created(webhooks, scope=CRM)
    entries = [history_store.append_log(CRM, webhook_id=webhook.id, occurred_at=clock()) for _ in range(3)]

    cursors = await history.cursors(CRM)
    await history.acknowledge(CRM, "alerts", cursors.encode(entries[0].position))
    await history.acknowledge(CRM, "alerts", cursors.encode(entries[1].position))
    assert await history.acknowledge(CRM, "alerts", cursors.encode(entries[0].position)) == cursors.encode(
        entries[1].position
    )  # never back

    ours = Follower(history.log(CRM, LogFilter(), after_cursor=None, since=None, follow=False, consumer="alerts"))
    assert await ours.read(1) == [entries[2]]
    await ours.close()
    theirs = history.log(ERP, LogFilter(), after_cursor=None, since=None, follow=False, consumer="alerts")
    assert [entry async for entry in theirs] == []  # another app: its own consumer, and none of CRM's entries
    with pytest.raises(Invalid):
        await history.acknowledge(CRM, "no spaces", cursors.encode(entries[0].position))


async def test_the_log_filters_by_kind_and_outcomes_select_among_attempts(
    webhooks: Webhooks, history: History, history_store: FakeHistory, clock: FakeClock
) -> None:
    webhook = await created(webhooks)
    failed = history_store.append_log(TENANT, webhook_id=webhook.id, occurred_at=clock(), outcome=Outcome.FAILED)
    await webhooks.delete(TENANT, webhook.id, expected_version=None)

    async def read(query: LogFilter) -> list[LogKind]:
        return [entry.kind async for entry in history.log(TENANT, query, after_cursor=None, since=None, follow=False)]

    assert await read(LogFilter()) == [LogKind.ATTEMPT, LogKind.DELETED]
    assert await read(LogFilter(kinds=(LogKind.DELETED,))) == [LogKind.DELETED]
    assert await read(LogFilter(outcomes=(Outcome.FAILED,))) == [LogKind.ATTEMPT]
    both = LogFilter(outcomes=(Outcome.SUCCEEDED,), kinds=(LogKind.ATTEMPT, LogKind.DELETED))
    assert await read(both) == [LogKind.DELETED]
    assert failed.kind is LogKind.ATTEMPT


# -- events read back ------------------------------------------------------------------------------------


async def test_events_read_back_exactly_and_page_newest_first(
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    history_store: FakeHistory,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    event_store = FakeEvents(webhook_store, notifications)
    events = Events(event_store, max_payload_bytes=1024, clock=clock)
    published = PublishedEvents(FakeEventHistory(event_store, history_store), webhook_store)
    ids = []
    for n in range(3):
        clock.advance(timedelta(seconds=1))
        done = await events.publish(
            TENANT,
            event_type="rfp.created",
            payload_json=f'{{"n": 1234567890123456789{n}}}',
            idempotency_key=None,
            webhook_id=None,
        )
        ids.append(done.event_id)

    event, _ = await published.get(TENANT, ids[0])
    first = await published.list_page(TENANT, EventFilter(), page_size=2, page_token="")
    second = await published.list_page(TENANT, EventFilter(), page_size=2, page_token=first.next_page_token)

    assert event.payload_json == '{"n": 12345678901234567890}'
    assert [e.id for e in first.events] == ids[:0:-1] and [e.id for e in second.events] == [ids[0]]
    assert second.next_page_token == ""
    with pytest.raises(Invalid):
        await published.list_page(
            TENANT, EventFilter(event_types=("rfp.*",)), page_size=2, page_token=first.next_page_token
        )


# -- SendTestEvent ---------------------------------------------------------------------------------------


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender(AttemptResult(Outcome.FAILED, 503, latency_ms=9, error="HTTP 503", response_excerpt="busy"))


@pytest.fixture
def records() -> FakePingRecords:
    return FakePingRecords()


@pytest.fixture
def pings(
    webhook_store: FakeWebhooks,
    secret_store: FakeSecrets,
    sender: FakeSender,
    records: FakePingRecords,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> Pings:
    buckets = FakePingBuckets(clock)
    return Pings(
        webhook_store, SigningSecrets(secret_store), sender, records, notifications, buckets=buckets, clock=clock
    )


async def test_a_test_event_is_signed_sent_whatever_the_pause_and_kept(
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    secret_store: FakeSecrets,
    pings: Pings,
    sender: FakeSender,
    records: FakePingRecords,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook = await created(webhooks, event_types=("invoice.*",), headers={"X-Team": "orders"})
    webhook_store.rows[webhook.id] = replace(webhook_store.rows[webhook.id], paused_at=clock())

    sent = await pings.send(TENANT, webhook.id, event_type=None)

    assert (sent.result.outcome, sent.result.http_status) == (Outcome.FAILED, 503)
    [request] = sender.requests
    assert request.headers["X-Team"] == "orders" and request.headers["webhook-id"] == sent.event_id
    secret = secret_store.records[webhook.vault_path]["current"]
    signing.verify(webhook.spec.signature_scheme, [secret], request.headers, request.body, int(clock().timestamp()))
    assert b'"type":"webhookd.ping"' in request.body
    [kept] = records.recorded
    assert (kept.delivery_id, kept.record.delivery_status, kept.record.next_attempt_at) == (
        sent.delivery_id,
        DeliveryStatus.FAILED,
        None,
    )
    assert notifications.count(Topic.ATTEMPTS) == 1


async def test_a_test_event_whose_caller_went_away_once_it_was_on_its_way_is_still_kept(
    webhooks: Webhooks, pings: Pings, sender: FakeSender, records: FakePingRecords, notifications: FakeNotifications
) -> None:
    """The POST may have reached the receiver: its attempt is logged, as any other, though no one waits."""
    webhook = await created(webhooks)
    gate = sender.hold(webhook.spec.url)
    sending = asyncio.ensure_future(pings.send(TENANT, webhook.id, event_type=None))
    await within(sender.wait_for_requests(1))

    sending.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await sending

    [kept] = records.recorded
    assert (kept.record.outcome, kept.record.http_status) == (Outcome.FAILED, 503)
    assert notifications.count(Topic.ATTEMPTS) == 1


async def test_a_test_event_needs_a_live_outbound_webhook_and_a_valid_type(
    webhooks: Webhooks, pings: Pings, sender: FakeSender
) -> None:
    inbound = await created(webhooks, url="", direction=Direction.INBOUND)
    deleted = await created(webhooks)
    await webhooks.delete(TENANT, deleted.id, expected_version=None)

    for webhook_id in (inbound.id, deleted.id):
        with pytest.raises(FailedPrecondition):
            await pings.send(TENANT, webhook_id, event_type=None)
    with pytest.raises(Invalid):
        await pings.send(TENANT, deleted.id, event_type="Not A Type")
    assert sender.requests == []


async def test_test_events_past_the_webhooks_limit_are_refused_with_when_to_come_back(
    webhooks: Webhooks, pings: Pings, sender: FakeSender, records: FakePingRecords, clock: FakeClock
) -> None:
    """A script or a stuck button cannot flood the customer's endpoint: a burst, then a steady rate."""
    webhook = await created(webhooks)
    other = await created(webhooks)
    for _ in range(PING_BURST):
        await pings.send(TENANT, webhook.id, event_type=None)

    with pytest.raises(ResourceExhausted) as refused:
        await pings.send(TENANT, webhook.id, event_type=None)

    assert refused.value.reason == TOO_MANY_PINGS
    assert f"{PING_BURST} in a row and {PINGS_PER_MINUTE} a minute" in refused.value.message
    assert refused.value.retry_after_seconds == 60 / PINGS_PER_MINUTE
    assert len(sender.requests) == len(records.recorded) == PING_BURST  # nothing sent or kept for it
    await pings.send(TENANT, other.id, event_type=None)  # each webhook has its own limit
    clock.advance(timedelta(seconds=60 / PINGS_PER_MINUTE))
    await pings.send(TENANT, webhook.id, event_type=None)
    assert len(sender.requests) == PING_BURST + 2


async def test_calls_refused_before_sending_use_none_of_the_webhooks_test_events(
    webhooks: Webhooks, pings: Pings, sender: FakeSender
) -> None:
    """Bad input, or another scope's caller naming the webhook, cannot use up its owner's tests."""
    webhook = await created(webhooks)
    for _ in range(PING_BURST + 1):
        with pytest.raises(Invalid):
            await pings.send(TENANT, webhook.id, event_type="Not A Type")
        with pytest.raises(NotFound):
            await pings.send(Scope("tnt_other"), webhook.id, event_type=None)

    for _ in range(PING_BURST):
        await pings.send(TENANT, webhook.id, event_type=None)
    assert len(sender.requests) == PING_BURST


async def test_a_test_event_without_a_way_out_is_unavailable_and_kept_nowhere(
    webhooks: Webhooks, pings: Pings, sender: FakeSender, records: FakePingRecords
) -> None:
    """The delivery proxy down: the caller is told to retry, and no attempt is made up for the log."""
    webhook = await created(webhooks)
    sender.error = Unavailable("the delivery proxy cannot be reached: connection refused")

    with pytest.raises(Unavailable):
        await pings.send(TENANT, webhook.id, event_type=None)

    assert records.recorded == []
