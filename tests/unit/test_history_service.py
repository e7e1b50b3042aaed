"""services/history.py on fakes: recover's window, redeliver, delivery pages, and the DeliveryLog stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from fakes import (
    FakeClock,
    FakeHistory,
    FakeLifecycle,
    FakeLogConsumers,
    FakeNotifications,
    FakeStreamLeases,
    FakeWebhooks,
    Follower,
    until,
    within,
)
from webhookd.domain.deliveries import MAX_RECOVER_WINDOW, DeliveryFilter
from webhookd.domain.errors import FailedPrecondition, Invalid, NotFound, ResourceExhausted
from webhookd.domain.history import LogEntry, LogFilter
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, LogKind, Outcome
from webhookd.domain.webhooks import Direction, Webhook, WebhookSpec
from webhookd.ports import Topic
from webhookd.services import tailing
from webhookd.services.history import History
from webhookd.services.tailing import StreamSlots
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
OTHER_TENANT = Scope("tnt_b")


@pytest.fixture
def history_store(webhook_store: FakeWebhooks) -> FakeHistory:
    return FakeHistory(webhook_store)


def history_over(
    store: FakeHistory,
    webhook_store: FakeWebhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    lifecycle: FakeLifecycle,
) -> History:
    return History(
        store,
        webhook_store,
        notifications,
        lifecycle=lifecycle,
        consumers=FakeLogConsumers(),
        stream_slots=StreamSlots(FakeStreamLeases(), 2),
        clock=clock,
    )


@pytest.fixture
def history(
    history_store: FakeHistory, webhook_store: FakeWebhooks, notifications: FakeNotifications, clock: FakeClock
) -> History:
    return history_over(history_store, webhook_store, notifications, clock, FakeLifecycle(history_store))


@pytest.fixture
async def webhook(webhooks: Webhooks) -> Webhook:
    return (await webhooks.create(TENANT, WebhookSpec(name="orders", url="https://receiver.example/hooks"), None))[0]


def violated_fields(error: Invalid) -> list[str]:
    return [violation.field for violation in error.violations]


# -- recover and redeliver -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        (None, "is required"),
        (-MAX_RECOVER_WINDOW - timedelta(seconds=1), "within the last 14 days"),
        (timedelta(seconds=1), "is in the future"),  # logged a recovery of none before
    ],
    ids=["missing", "too old", "future"],
)
async def test_recover_needs_a_since_within_fourteen_days(
    history: History, webhook: Webhook, clock: FakeClock, since: timedelta | None, problem: str
) -> None:
    with pytest.raises(Invalid, match=problem) as raised:
        await history.recover(TENANT, webhook.id, since=None if since is None else clock() + since)

    assert violated_fields(raised.value) == ["since"]


async def test_recover_requeues_the_failures_since_then_and_wakes_the_workers(
    history: History, history_store: FakeHistory, webhook: Webhook, notifications: FakeNotifications, clock: FakeClock
) -> None:
    since = clock() - MAX_RECOVER_WINDOW
    too_old = history_store.add_delivery(
        TENANT, webhook_id=webhook.id, created_at=since - timedelta(seconds=1), status=DeliveryStatus.FAILED
    )
    failed = history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=since, status=DeliveryStatus.FAILED)
    history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=since, status=DeliveryStatus.SUCCEEDED)

    queued = await history.recover(TENANT, webhook.id, since=since)

    assert queued == 1
    requeued = history_store.deliveries[failed.id].delivery
    assert (requeued.status, requeued.next_attempt_at) == (DeliveryStatus.PENDING, clock())
    assert history_store.deliveries[too_old.id].delivery.status is DeliveryStatus.FAILED
    assert notifications.count(Topic.DELIVERIES) == 1


class RecoverAwaitingItsAnswer(FakeHistory):
    """A recover that has reached the database and waits for its COMMIT's answer until `answered`."""

    def __init__(self, webhooks: FakeWebhooks) -> None:
        super().__init__(webhooks)
        self.sent = asyncio.Event()
        self.answered = asyncio.Event()

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime, now: datetime) -> int:
        queued = await super().recover(scope, webhook_id, since=since, now=now)
        self.sent.set()
        await self.answered.wait()
        return queued


async def test_a_recover_whose_caller_went_away_once_it_was_sent_still_logs_the_recovery(
    webhook_store: FakeWebhooks, webhook: Webhook, notifications: FakeNotifications, clock: FakeClock
) -> None:
    """The deliveries it queued again are not left without their entry in the log, nor the workers unwoken."""
    store = RecoverAwaitingItsAnswer(webhook_store)
    lifecycle = FakeLifecycle(store)
    history = history_over(store, webhook_store, notifications, clock, lifecycle)
    store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.FAILED)
    recovering = asyncio.ensure_future(history.recover(TENANT, webhook.id, since=clock()))
    await within(store.sent.wait())

    recovering.cancel()
    store.answered.set()
    with pytest.raises(asyncio.CancelledError):
        await recovering

    assert [change.kind for change in lifecycle.changes] == [LogKind.RECOVERED]
    assert notifications.count(Topic.DELIVERIES) == 1


async def test_recover_with_nothing_to_requeue_wakes_nobody(
    history: History, webhook: Webhook, notifications: FakeNotifications, clock: FakeClock
) -> None:
    assert await history.recover(TENANT, webhook.id, since=clock() - timedelta(days=1)) == 0
    assert notifications.count(Topic.DELIVERIES) == 0


async def test_recover_on_another_tenants_webhook_is_not_found(
    history: History, webhook: Webhook, clock: FakeClock
) -> None:
    with pytest.raises(NotFound):
        await history.recover(OTHER_TENANT, webhook.id, since=clock())


async def test_recover_needs_a_live_outbound_webhook_and_notes_nothing_otherwise(
    history: History,
    history_store: FakeHistory,
    webhooks: Webhooks,
    webhook: Webhook,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    since = clock() - timedelta(days=1)
    failed = history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.FAILED)
    inbound = WebhookSpec(name="partner", direction=Direction.INBOUND, url="")
    receiving = (await webhooks.create(TENANT, inbound, None))[0]
    await webhooks.delete(TENANT, webhook.id, expected_version=None)
    woken = notifications.count(Topic.ATTEMPTS)

    # Nothing it queued could be sent: a deleted webhook sends nothing, nothing is sent to an inbound one.
    with pytest.raises(FailedPrecondition, match="deleted"):
        await history.recover(TENANT, webhook.id, since=since)
    with pytest.raises(FailedPrecondition, match="inbound"):
        await history.recover(TENANT, receiving.id, since=since)

    assert history_store.deliveries[failed.id].delivery.status is DeliveryStatus.FAILED
    assert notifications.count(Topic.ATTEMPTS) == woken  # no webhook.recovered entry either


@pytest.mark.parametrize("change", ["deleted", "disabled"])
async def test_a_delivery_of_a_deleted_or_disabled_webhook_is_not_redelivered(
    history: History,
    history_store: FakeHistory,
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    webhook: Webhook,
    clock: FakeClock,
    change: str,
) -> None:
    done = history_store.add_delivery(
        TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.SUCCEEDED
    )
    if change == "deleted":
        await webhooks.delete(TENANT, webhook.id, expected_version=None)
    else:
        webhook_store.rows[webhook.id] = replace(webhook, spec=replace(webhook.spec, enabled=False))

    # It would answer "pending, due now" for a delivery no worker takes while the webhook is so.
    with pytest.raises(FailedPrecondition, match=change):
        await history.redeliver(TENANT, done.id)

    assert history_store.deliveries[done.id].delivery.status is DeliveryStatus.SUCCEEDED


async def test_redeliver_makes_the_delivery_due_and_wakes_the_workers(
    history: History, history_store: FakeHistory, webhook: Webhook, notifications: FakeNotifications, clock: FakeClock
) -> None:
    done = history_store.add_delivery(
        TENANT, webhook_id=webhook.id, created_at=clock(), status=DeliveryStatus.SUCCEEDED
    )
    clock.advance(timedelta(hours=1))

    again = await history.redeliver(TENANT, done.id)

    assert (again.status, again.next_attempt_at, again.completed_at) == (DeliveryStatus.PENDING, clock(), None)
    assert notifications.count(Topic.DELIVERIES) == 1


async def test_a_delivery_being_attempted_is_not_redelivered(
    history: History, history_store: FakeHistory, webhook: Webhook, notifications: FakeNotifications, clock: FakeClock
) -> None:
    busy = history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock(), in_flight=True)

    with pytest.raises(FailedPrecondition):
        await history.redeliver(TENANT, busy.id)
    with pytest.raises(NotFound):
        await history.redeliver(OTHER_TENANT, busy.id)

    assert notifications.count(Topic.DELIVERIES) == 0


# -- listing deliveries ----------------------------------------------------------------------------------


async def test_delivery_pages_go_newest_first_and_ties_on_time_break_by_id(
    history: History, history_store: FakeHistory, webhook: Webhook, clock: FakeClock
) -> None:
    created = [
        history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock() + timedelta(seconds=n // 2))
        for n in range(5)  # pairs share a created_at: the keyset must not skip or repeat one of a pair
    ]
    history_store.add_delivery(OTHER_TENANT, webhook_id=webhook.id, created_at=clock())

    seen, token, pages = [], "", 0
    while True:
        page = await history.list_deliveries(TENANT, DeliveryFilter(), page_size=2, page_token=token)
        seen += [delivery.id for delivery in page.deliveries]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert pages == 3
    assert seen == [d.id for d in sorted(created, key=lambda d: (d.created_at, d.id), reverse=True)]


async def test_a_delivery_page_token_is_bound_to_its_filters(
    history: History, history_store: FakeHistory, webhook: Webhook, clock: FakeClock
) -> None:
    for _ in range(3):
        history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock())
    page = await history.list_deliveries(TENANT, DeliveryFilter(), page_size=1, page_token="")

    with pytest.raises(Invalid) as raised:
        await history.list_deliveries(
            TENANT, DeliveryFilter(status=DeliveryStatus.FAILED), page_size=1, page_token=page.next_page_token
        )

    assert violated_fields(raised.value) == ["page_token"]


async def test_the_deliveries_of_another_tenants_webhook_are_not_found(
    history: History, history_store: FakeHistory, webhook: Webhook, clock: FakeClock
) -> None:
    history_store.add_delivery(TENANT, webhook_id=webhook.id, created_at=clock())

    with pytest.raises(NotFound):
        await history.list_deliveries(OTHER_TENANT, DeliveryFilter(webhook_id=webhook.id), page_size=0, page_token="")
    with pytest.raises(NotFound):
        await history.list_deliveries(
            TENANT, DeliveryFilter(webhook_id="whk_01J0000000000000000000000"), page_size=0, page_token=""
        )
    assert (
        len(
            (
                await history.list_deliveries(TENANT, DeliveryFilter(webhook_id=webhook.id), page_size=0, page_token="")
            ).deliveries
        )
        == 1
    )


async def test_delivery_event_type_filters_are_checked(history: History) -> None:
    with pytest.raises(Invalid) as raised:
        await history.list_deliveries(
            TENANT, DeliveryFilter(event_types=("orders.*", "Orders")), page_size=0, page_token=""
        )

    assert violated_fields(raised.value) == ["event_type[1]"]


async def test_a_delivery_time_range_that_ends_before_it_starts_is_invalid(history: History, clock: FakeClock) -> None:
    """An empty page would hide the mistake: ListEvents refuses the same range."""
    backwards = DeliveryFilter(start_time=clock(), end_time=clock() - timedelta(hours=1))

    with pytest.raises(Invalid) as raised:
        await history.list_deliveries(TENANT, backwards, page_size=0, page_token="")

    assert violated_fields(raised.value) == ["end_time"]


# -- the DeliveryLog -------------------------------------------------------------------------------------


async def read_all(entries: AsyncIterator[LogEntry]) -> list[LogEntry]:
    return [entry async for entry in entries]


async def test_the_log_names_every_bad_event_type_filter(history: History) -> None:
    entries = history.log(
        TENANT, LogFilter(event_types=("*", "a..b", "B")), after_cursor=None, since=None, follow=False
    )

    with pytest.raises(Invalid) as raised:
        await read_all(entries)

    assert violated_fields(raised.value) == ["event_types[1]", "event_types[2]"]


async def test_the_log_of_another_tenants_webhook_is_not_found(history: History, webhook: Webhook) -> None:
    entries = history.log(OTHER_TENANT, LogFilter(webhook_id=webhook.id), after_cursor=None, since=None, follow=False)

    with pytest.raises(NotFound):
        await read_all(entries)


async def test_the_log_reads_the_callers_entries_after_a_position_or_since_a_time(
    history: History, history_store: FakeHistory, webhook: Webhook, clock: FakeClock
) -> None:
    first = history_store.append_log(TENANT, webhook_id=webhook.id, occurred_at=clock())
    history_store.append_log(OTHER_TENANT, webhook_id="whk_theirs", occurred_at=clock())
    second = history_store.append_log(TENANT, webhook_id=webhook.id, occurred_at=clock() + timedelta(seconds=1))
    third = history_store.append_log(
        TENANT, webhook_id=webhook.id, occurred_at=clock() + timedelta(seconds=2), outcome=Outcome.FAILED
    )

    everything = await read_all(history.log(TENANT, LogFilter(), after_cursor=None, since=None, follow=False))
    cursor = (await history.cursors(TENANT)).encode(first.position)
    after_first = await read_all(history.log(TENANT, LogFilter(), after_cursor=cursor, since=None, follow=False))
    since = await read_all(history.log(TENANT, LogFilter(), after_cursor=None, since=third.occurred_at, follow=False))
    failed = await read_all(
        history.log(TENANT, LogFilter(outcomes=(Outcome.FAILED,)), after_cursor=None, since=None, follow=False)
    )

    # A cursor's stream has no `since` (DeliveryLogRequest: ignored when after_cursor is set).
    after_first_since = await read_all(
        history.log(TENANT, LogFilter(), after_cursor=cursor, since=third.occurred_at, follow=False)
    )

    assert everything == [first, second, third]
    assert after_first == [second, third] and after_first_since == [second, third]
    assert since == [third] and failed == [third]


async def test_a_following_log_reads_new_entries_when_attempts_are_notified(
    history: History,
    history_store: FakeHistory,
    webhook: Webhook,
    notifications: FakeNotifications,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)  # only the notification can wake the follower
    old = history_store.append_log(TENANT, webhook_id=webhook.id, occurred_at=clock())
    follower = Follower(history.log(TENANT, LogFilter(), after_cursor=None, since=None, follow=True))
    assert await follower.read(1) == [old]

    new = history_store.append_log(TENANT, webhook_id=webhook.id, occurred_at=clock())
    notifications.notify(Topic.ATTEMPTS)

    assert await follower.read(2) == [old, new]
    await follower.close()


async def test_a_tenant_may_hold_only_so_many_log_streams(
    history: History, webhook: Webhook, notifications: FakeNotifications
) -> None:
    followers = [
        Follower(history.log(TENANT, LogFilter(), after_cursor=None, since=None, follow=True)) for _ in range(2)
    ]
    await until(lambda: notifications.subscribers(Topic.ATTEMPTS) == 2)  # each holds its slot, then subscribes

    with pytest.raises(ResourceExhausted):
        await read_all(history.log(TENANT, LogFilter(), after_cursor=None, since=None, follow=False))
    assert await read_all(history.log(OTHER_TENANT, LogFilter(), after_cursor=None, since=None, follow=False)) == []

    await followers[0].close()
    assert await read_all(history.log(TENANT, LogFilter(), after_cursor=None, since=None, follow=False)) == []
    await followers[1].close()
