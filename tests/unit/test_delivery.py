"""delivery/attempt.py and delivery/pool.py on fakes: signing, recording, retry times, claiming and stopping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol

import pytest

from fakes import (
    FakeClock,
    FakeDeliveryQueue,
    FakeNotifications,
    FakeSecrets,
    FakeSender,
    FakeWebhooks,
    until,
    within,
)
from webhookd.delivery import pool as pool_module
from webhookd.delivery import recorder as recorder_module
from webhookd.delivery.attempt import INTERNAL_SEND_ERROR, UNAVAILABLE_RETRY, Deliverer
from webhookd.delivery.batch_observer import EXPRESS_CLAIM, QUEUE_CLAIM, BatchObserver
from webhookd.delivery.claim_ahead import ClaimAhead
from webhookd.delivery.pool import DeliveryPool
from webhookd.delivery.recorder import AttemptRecorder
from webhookd.domain import retry, signing
from webhookd.domain.credentials import Credential, with_credential
from webhookd.domain.deliveries import AttemptRecord, AttemptResult, ClaimedDelivery, RecordedBatch
from webhookd.domain.errors import DomainError, TransactionConflict, Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.webhooks import Ordering, RetryPolicy, SignatureScheme, Webhook, WebhookSpec
from webhookd.ports import Topic
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
URL = "https://receiver.example/hooks"
ORDERS = WebhookSpec(name="orders", url=URL)


@pytest.fixture
def queue(webhook_store: FakeWebhooks, clock: FakeClock) -> FakeDeliveryQueue:
    return FakeDeliveryQueue(webhook_store, clock)


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
async def recorder(queue: FakeDeliveryQueue, notifications: FakeNotifications) -> AsyncIterator[AttemptRecorder]:
    started = AttemptRecorder(queue, notifications)
    started.start()
    yield started
    await started.stop()


@pytest.fixture
def deliverer(
    queue: FakeDeliveryQueue,
    secret_store: FakeSecrets,
    sender: FakeSender,
    recorder: AttemptRecorder,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> Deliverer:
    return Deliverer(queue, SigningSecrets(secret_store), sender, recorder, notifications, clock=clock)


@pytest.fixture
def recheck_after_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool held back by caps looks again only after an hour: a test's wake is then the one it caused."""
    monkeypatch.setattr(pool_module, "CAPPED_RECHECK_SECONDS", 3600.0)


async def subscriber(webhooks: Webhooks, spec: WebhookSpec = ORDERS) -> tuple[Webhook, str]:
    webhook, handed_out, _ = await webhooks.create(TENANT, spec, None)
    return webhook, handed_out


async def one_leased(webhooks: Webhooks, queue: FakeDeliveryQueue) -> tuple[Webhook, ClaimedDelivery]:
    """A webhook with one delivery, claimed outside any pool: its lease runs (a POST under way) until the
    test records it."""
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    [leased] = await queue.claim(1, per_webhook=1, per_tenant=1000)
    return webhook, leased


DeliverOne = Callable[[Webhook], Awaitable[str]]


@pytest.fixture
def deliver_one(queue: FakeDeliveryQueue, deliverer: Deliverer, recorder: AttemptRecorder) -> DeliverOne:
    async def deliver(webhook: Webhook) -> str:
        """Queues, claims and attempts one delivery to `webhook` as a worker would, and waits until the
        recorder has written what it did; the delivery's id."""
        delivery_id = queue.add(webhook)
        [claimed] = await queue.claim(1, per_webhook=1, per_tenant=100)
        await deliverer.deliver(claimed)
        await within(recorder.flush())
        return delivery_id

    return deliver


# -- one attempt -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [s for s in SignatureScheme if not (s.asymmetric or s.secret_from_sender)])
async def test_the_attempt_is_signed_with_the_webhooks_secret(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, scheme: SignatureScheme
) -> None:
    webhook, secret = await subscriber(
        webhooks, replace(ORDERS, signature_scheme=scheme, headers={"X-Team": "billing"})
    )

    await deliver_one(webhook)

    [request] = sender.requests
    sent_at = int(request.headers[signing.TIMESTAMP_HEADER])
    signing.verify(scheme, [secret], request.headers, request.body, now=sent_at)
    assert request.headers[signing.ID_HEADER] == queue.attempts[0][0].event_id
    assert request.headers["X-Team"] == "billing"
    assert (request.url, request.timeout_ms) == (URL, webhook.spec.retry_policy.timeout_ms)


async def test_during_a_rotation_both_secrets_sign(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks
) -> None:
    webhook, old_secret = await subscriber(webhooks)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    await deliver_one(webhook)

    [request] = sender.requests
    sent_at = int(request.headers[signing.TIMESTAMP_HEADER])
    for secret in (old_secret, rotation.signing_secret):
        signing.verify(SignatureScheme.STANDARD_WEBHOOKS, [secret], request.headers, request.body, now=sent_at)


@pytest.mark.parametrize("scheme", [SignatureScheme.STANDARD_WEBHOOKS, SignatureScheme.HMAC_SHA256])
async def test_once_the_overlap_ends_the_replaced_secret_signs_no_more_before_any_sweep(
    deliver_one: DeliverOne,
    sender: FakeSender,
    webhooks: Webhooks,
    secret_store: FakeSecrets,
    clock: FakeClock,
    scheme: SignatureScheme,
) -> None:
    """The record still holds it until the workers' sweep (services/ended_overlaps.py) takes it out, and
    the record read during the overlap is the one kept: the time of the attempt decides, not the record."""
    webhook, _ = await subscriber(webhooks, replace(ORDERS, signature_scheme=scheme))
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    await deliver_one(webhook)
    clock.advance(timedelta(hours=1, seconds=1))
    await deliver_one(webhook)

    during, after = sender.requests
    assert "previous" in secret_store.records[webhook.vault_path]
    if scheme is SignatureScheme.HMAC_SHA256:
        assert signing.GITHUB_PREVIOUS_SIGNATURE_HEADER in during.headers
        assert signing.GITHUB_PREVIOUS_SIGNATURE_HEADER not in after.headers
    else:
        assert len(during.headers[signing.SIGNATURE_HEADER].split()) == 2
        assert len(after.headers[signing.SIGNATURE_HEADER].split()) == 1
    sent_at = int(after.headers[signing.TIMESTAMP_HEADER])
    signing.verify(scheme, [rotation.signing_secret], after.headers, after.body, now=sent_at)


async def test_a_rotation_that_vault_carried_out_after_answering_unavailable_never_signs(
    deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """The caller was told UNAVAILABLE and holds no new secret; the row still names the old one. The
    secret nobody was handed must not sign, in the overlap (hmac-sha256's one header holds the newest)
    or after it."""
    webhook, old_secret = await subscriber(webhooks, replace(ORDERS, signature_scheme=SignatureScheme.HMAC_SHA256))
    secret_store.answers_late = True
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    secret_store.answers_late = False

    await deliver_one(webhook)
    clock.advance(timedelta(hours=2))  # past the overlap the lost rotation wrote
    await deliver_one(webhook)

    expected = "sha256=" + hmac.new(old_secret.encode(), sender.requests[0].body, hashlib.sha256).hexdigest()
    assert [request.headers.get(signing.GITHUB_SIGNATURE_HEADER) for request in sender.requests] == [expected] * 2
    assert not any(signing.GITHUB_PREVIOUS_SIGNATURE_HEADER in request.headers for request in sender.requests)


async def test_the_delivery_credential_is_sent_and_a_new_one_from_the_next_delivery_on(
    deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, secret_store: FakeSecrets
) -> None:
    webhook, _ = await subscriber(webhooks)
    await deliver_one(webhook)  # none yet: the record is read and kept without one
    first = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer a")
    await deliver_one(first)
    second = await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="key-b")
    await deliver_one(second)

    assert [request.credential for request in sender.requests] == [
        None,
        Credential("Authorization", "Bearer a"),
        Credential("X-Api-Key", "key-b"),
    ]
    assert all("Bearer a" not in request.headers.values() for request in sender.requests)


async def test_a_credential_in_vault_that_the_webhooks_row_does_not_name_is_never_sent(
    deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, secret_store: FakeSecrets
) -> None:
    """Left behind by a change that failed, or ahead of one still committing: the row's url is not held
    to the origin such a credential was set for, so it could reach a host of anyone's choosing."""
    webhook, _ = await subscriber(webhooks)
    record = secret_store.records[webhook.vault_path]
    secret_store.records[webhook.vault_path] = with_credential(
        record, Credential("Authorization", "Bearer stray"), named_id=""
    )
    await deliver_one(webhook)  # the row names none
    credentialed = await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="k-1")
    record = secret_store.records[webhook.vault_path]
    # Written without the one the row names (k-1) kept beside it.
    secret_store.records[webhook.vault_path] = with_credential(record, Credential("X-Api-Key", "k-2"), named_id="")
    await deliver_one(credentialed)  # the row names k-1's id, Vault holds k-2's

    assert [request.credential for request in sender.requests] == [None, None]


async def test_a_failed_attempt_is_recorded_with_the_policys_next_retry_and_notified(
    queue: FakeDeliveryQueue,
    deliver_one: DeliverOne,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    sender.result = AttemptResult(Outcome.FAILED, 500, latency_ms=30, error="HTTP 500", response_excerpt="oops")

    delivery_id = await deliver_one(webhook)

    [(claimed, record)] = queue.attempts
    first_wait = retry.base_delay(webhook.spec.retry_policy, 1)
    assert first_wait is not None
    assert record.next_attempt_at is not None
    assert clock() + timedelta(seconds=first_wait * 0.8) <= record.next_attempt_at
    assert record.next_attempt_at <= clock() + timedelta(seconds=first_wait * 1.2)
    assert (record.outcome, record.http_status, record.error, record.occurred_at) == (
        Outcome.FAILED,
        500,
        "HTTP 500",
        clock(),
    )
    assert claimed.attempt == 1
    assert queue.deliveries[delivery_id].status is DeliveryStatus.PENDING
    assert notifications.count(Topic.ATTEMPTS) == 1  # by the recorder, once written


async def test_an_error_of_ours_while_sending_still_ends_as_an_attempt_on_the_schedule(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks)
    sender.error = RuntimeError("a bug in the sender")

    delivery_id = await deliver_one(webhook)

    [(_, record)] = queue.attempts
    assert (record.outcome, record.http_status, record.error) == (Outcome.CONNECTION_ERROR, None, INTERNAL_SEND_ERROR)
    assert record.next_attempt_at is not None and record.next_attempt_at > clock()
    assert queue.deliveries[delivery_id].status is DeliveryStatus.PENDING


async def test_a_later_retry_after_wins_over_the_schedule(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks)
    sender.result = AttemptResult(Outcome.FAILED, 429, latency_ms=3, error="HTTP 429", retry_after_seconds=600.0)

    await deliver_one(webhook)

    assert queue.attempts[0][1].next_attempt_at == clock() + timedelta(seconds=600)


async def test_a_shorter_retry_after_does_not_hasten_the_schedule(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks)
    sender.result = AttemptResult(Outcome.FAILED, 503, latency_ms=3, error="HTTP 503", retry_after_seconds=1.0)

    await deliver_one(webhook)

    next_attempt_at = queue.attempts[0][1].next_attempt_at
    assert next_attempt_at is not None and next_attempt_at >= clock() + timedelta(seconds=4)


async def test_the_last_attempt_finishes_the_delivery_as_failed(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, sender: FakeSender, webhooks: Webhooks
) -> None:
    webhook, _ = await subscriber(webhooks, replace(ORDERS, retry_policy=RetryPolicy(max_attempts=1)))
    sender.result = AttemptResult(Outcome.TIMED_OUT, None, latency_ms=15_000, error="timed out after 15000 ms")

    delivery_id = await deliver_one(webhook)

    assert queue.attempts[0][1].next_attempt_at is None
    assert queue.deliveries[delivery_id].status is DeliveryStatus.FAILED


async def test_a_success_finishes_the_delivery(
    queue: FakeDeliveryQueue, deliver_one: DeliverOne, webhooks: Webhooks, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks)

    delivery_id = await deliver_one(webhook)

    assert queue.attempts[0][1].next_attempt_at is None
    assert queue.deliveries[delivery_id].status is DeliveryStatus.SUCCEEDED
    stats = webhook_store.rows[webhook.id]
    assert (stats.last_delivery_at, stats.last_delivery_status, stats.version) == (clock(), Outcome.SUCCEEDED, 1)


@pytest.mark.parametrize("secret_trouble", ["vault down", "secret missing"])
async def test_without_a_secret_the_delivery_is_released_without_an_attempt(
    queue: FakeDeliveryQueue,
    deliver_one: DeliverOne,
    sender: FakeSender,
    secret_store: FakeSecrets,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    secret_trouble: str,
) -> None:
    webhook, _ = await subscriber(webhooks)
    if secret_trouble == "vault down":
        secret_store.reachable = False
    else:
        secret_store.records.clear()

    delivery_id = await deliver_one(webhook)

    assert sender.requests == [] and queue.attempts == []
    assert [after for _, after in queue.releases] == [UNAVAILABLE_RETRY]
    delivery = queue.deliveries[delivery_id]
    assert (delivery.attempts, delivery.lease_token, delivery.next_attempt_at) == (
        0,
        None,
        clock() + UNAVAILABLE_RETRY,
    )
    assert notifications.count(Topic.DELIVERIES) == 1 and notifications.count(Topic.ATTEMPTS) == 0


async def test_without_a_way_out_the_delivery_is_released_without_an_attempt(
    queue: FakeDeliveryQueue,
    deliver_one: DeliverOne,
    sender: FakeSender,
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    clock: FakeClock,
) -> None:
    """The delivery proxy down: the receiver was never asked, so nothing counts against it (no
    attempt, no step towards its auto-pause), and the delivery comes round again."""
    webhook, _ = await subscriber(webhooks)
    sender.error = Unavailable("the delivery proxy cannot be reached: connection refused")

    delivery_id = await deliver_one(webhook)

    assert len(sender.requests) == 1 and queue.attempts == []
    assert [after for _, after in queue.releases] == [UNAVAILABLE_RETRY]
    delivery = queue.deliveries[delivery_id]
    assert (delivery.attempts, delivery.lease_token, delivery.status) == (0, None, DeliveryStatus.PENDING)
    assert webhook_store.rows[webhook.id].consecutive_failures == 0


# -- the pool --------------------------------------------------------------------------------------------


class PoolFactory(Protocol):
    def __call__(
        self,
        *,
        workers: int,
        grace_seconds: float = 10.0,
        per_webhook: int = 100,
        observer: BatchObserver | None = None,
    ) -> DeliveryPool: ...


@pytest.fixture
def make_pool(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> PoolFactory:
    def make(
        *, workers: int, grace_seconds: float = 10.0, per_webhook: int = 100, observer: BatchObserver | None = None
    ) -> DeliveryPool:
        # An hour's poll: the pool wakes only for what the test does. No per-webhook cap gets in the way
        # unless the test sets one.
        return DeliveryPool(
            queue,
            deliverer,
            recorder,
            notifications,
            workers=workers,
            per_webhook=per_webhook,
            per_tenant=1000,
            poll_seconds=3600.0,
            grace_seconds=grace_seconds,
            observer=observer,
            clock=clock,
        )

    return make


async def started_asleep(pool: DeliveryPool, queue: FakeDeliveryQueue) -> asyncio.Task[None]:
    """`pool` running, once its first look found nothing to claim now and it went to sleep."""
    running = asyncio.create_task(pool.run())
    await within(queue.looked_ahead.wait())
    return running


async def stop(pool: DeliveryPool, running: asyncio.Task[None]) -> None:
    pool.stop()
    await within(running)


async def test_the_pool_runs_at_most_its_workers_deliveries_at_once_and_claims_as_many_ahead(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    for _ in range(5):
        queue.add(webhook)
    receiver = sender.hold(URL)
    pool = make_pool(workers=2)
    running = asyncio.create_task(pool.run())

    await within(sender.wait_for_requests(2))
    await until(lambda: pool.in_flight == 4)  # two running, two claimed and queued for them
    assert len(sender.requests) == 2
    assert queue.claim_limits == [4]  # one claim for both: room for `workers` more than run

    receiver.set()
    await within(sender.wait_for_requests(5))
    await stop(pool, running)

    assert len(queue.attempts) == 5
    assert sender.most_in_flight == 2


class MonotonicClock:
    """The pace window's clock (seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_pool_whose_workers_keep_a_fast_pace_claims_further_ahead(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    notifications: FakeNotifications,
    webhooks: Webhooks,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    for _ in range(20):
        queue.add(webhook)
    window = MonotonicClock()
    claim_ahead = ClaimAhead(2, horizon_seconds=0.5, window_seconds=0.25, clock=window)
    for _ in range(100):  # 400 a second: the queue may hold seven times the workers
        claim_ahead.finished()
    window.now += 0.25
    pool = DeliveryPool(
        queue,
        deliverer,
        recorder,
        notifications,
        workers=2,
        per_webhook=100,
        per_tenant=1000,
        poll_seconds=3600.0,
        claim_ahead=claim_ahead,
        clock=clock,
    )
    running = asyncio.create_task(pool.run())

    await until(lambda: len(queue.attempts) == 20)
    await stop(pool, running)

    assert queue.claim_limits[0] == 16  # two running and fourteen queued, not the two of a slow pace


async def test_a_quiet_webhooks_new_delivery_starts_before_a_busy_webhooks_queued_backlog(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    deliverer: Deliverer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []  # the webhooks of the deliveries the workers take, in the order taken
    attempt = deliverer.deliver

    async def deliver(delivery: ClaimedDelivery) -> None:
        started.append(delivery.webhook_id)
        await attempt(delivery)

    monkeypatch.setattr(deliverer, "deliver", deliver)
    busy, _ = await subscriber(webhooks)
    quiet, _ = await subscriber(webhooks, replace(ORDERS, name="quiet", url="https://quiet.example/hooks"))
    for _ in range(6):
        queue.add(busy)
    gate = sender.hold(URL)
    pool = make_pool(workers=2)
    running = asyncio.create_task(pool.run())
    await until(lambda: pool.in_flight == 4)  # two attempting, two queued, all the busy webhook's

    queue.add(quiet)
    notifications.notify(Topic.DELIVERIES)
    # Claimed at once, though the queue had no room: with the busy webhook's two left, as due before.
    await until(lambda: pool.in_flight == 7)

    # The first worker to be free takes it, ahead of the busy webhook's four claimed with or before it.
    gate.set()
    await within(sender.wait_for_requests(7))
    assert started == [busy.id, busy.id, quiet.id, busy.id, busy.id, busy.id, busy.id]
    await stop(pool, running)
    assert len(queue.attempts) == 7


async def test_a_quiet_webhook_named_while_the_queue_is_over_full_is_claimed_when_one_place_frees(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    deliverer: Deliverer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finish_one = asyncio.Semaphore(0)  # each release lets one of the busy webhook's deliveries finish
    attempt = deliverer.deliver
    busy, _ = await subscriber(webhooks)
    quiet, _ = await subscriber(webhooks, replace(ORDERS, name="quiet", url="https://quiet.example/hooks"))

    async def deliver(delivery: ClaimedDelivery) -> None:
        if delivery.webhook_id == busy.id:
            await finish_one.acquire()
        await attempt(delivery)

    monkeypatch.setattr(deliverer, "deliver", deliver)
    for _ in range(12):
        queue.add(busy)
    pool = make_pool(workers=2)  # room for 4, and 8 more for what notifications bring
    running = asyncio.create_task(pool.run())
    await until(lambda: pool.in_flight == 4)
    notifications.notify(Topic.DELIVERIES)  # new deliveries, no webhook named (a wide fan-out)
    await until(lambda: pool.in_flight == 12)  # as full as notifications may make it
    waiting = queue.add(quiet)
    notifications.notify(Topic.DELIVERIES, quiet.id)  # no place for it: the queue is as full as allowed

    finish_one.release()
    # Claimed as soon as that one place frees, not once the nine places a batch needs have.
    await until(lambda: queue.deliveries[waiting].lease_expires_at is not None)
    assert pool.in_flight == 12

    for _ in range(12):
        finish_one.release()
    await stop(pool, running)


async def test_a_busy_webhooks_new_deliveries_wait_for_a_batchs_room(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    deliverer: Deliverer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under a steady publisher every publish names its webhooks; claiming a few past the room for
    # each such notification kept the serialised claim busy with one or two deliveries at a time.
    finish_one = asyncio.Semaphore(0)
    attempt = deliverer.deliver

    async def deliver(delivery: ClaimedDelivery) -> None:
        await finish_one.acquire()
        await attempt(delivery)

    monkeypatch.setattr(deliverer, "deliver", deliver)
    busy, _ = await subscriber(webhooks)
    for _ in range(12):
        queue.add(busy)
    pool = make_pool(workers=2)  # room for 4
    running = asyncio.create_task(pool.run())
    await until(lambda: pool.in_flight == 4)
    notifications.notify(Topic.DELIVERIES, busy.id)  # a webhook this process already holds
    await until(lambda: not notifications.pending(Topic.DELIVERIES))  # the pool took the notification

    finish_one.release()
    await until(lambda: len(queue.claim_limits) == 2)
    assert queue.claim_limits == [4, 1]  # the one place that freed, not a notification's few past the room

    for _ in range(12):
        finish_one.release()
    await stop(pool, running)


async def test_the_pool_wakes_when_deliveries_are_notified(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)  # nothing due, nothing scheduled: asleep for the hour

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES)

    await within(sender.wait_for_requests(1))
    await stop(pool, running)
    assert len(queue.attempts) == 1


async def test_a_named_webhook_this_process_holds_nothing_of_gets_an_express_claim(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    recheck_after_an_hour: None,
) -> None:
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)

    await within(sender.wait_for_requests(1))
    await stop(pool, running)
    assert queue.claimed_named == [[webhook.id]]


async def test_a_named_notification_whose_webhooks_all_get_express_claims_brings_no_claim_of_the_queue(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    recheck_after_an_hour: None,
) -> None:
    # The claimer woke for every named notification too: at ~500 deliveries/s through one worker
    # process, ~230 claims of the whole queue per 3,000 deliveries came back empty, the express claim
    # having taken what they were woken for, each with its next-due lookup and on the claim lock.
    quiet, _ = await subscriber(webhooks)
    other, _ = await subscriber(webhooks, replace(ORDERS, name="other", url="https://other.example/hooks"))
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)
    claims = len(queue.claim_limits)

    queue.add(quiet)
    notifications.notify(Topic.DELIVERIES, quiet.id)
    await within(sender.wait_for_requests(1))
    queue.add(other)
    notifications.notify(Topic.DELIVERIES)  # names none: the claimer's
    await within(sender.wait_for_requests(2))

    assert queue.claimed_named == [[quiet.id]]
    assert len(queue.claim_limits) == claims + 1  # the unnamed notification's, none for the named one
    await stop(pool, running)


class TalliedBatches:
    """A BatchObserver that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.claims: list[tuple[str, int]] = []
        self.batches: list[int] = []

    def claimed(self, claim: str, deliveries: int) -> None:
        self.claims.append((claim, deliveries))

    def recorded(self, attempts: int) -> None:
        self.batches.append(attempts)


async def test_the_pool_reports_each_claim_by_kind_with_the_deliveries_it_took(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    recheck_after_an_hour: None,
) -> None:
    quiet, _ = await subscriber(webhooks)
    busy, _ = await subscriber(webhooks, replace(ORDERS, name="busy", url="https://busy.example/hooks"))
    tally = TalliedBatches()
    pool = make_pool(workers=4, observer=tally)
    running = await started_asleep(pool, queue)

    queue.add(quiet)
    notifications.notify(Topic.DELIVERIES, quiet.id)
    await within(sender.wait_for_requests(1))
    for _ in range(3):
        queue.add(busy)
    notifications.notify(Topic.DELIVERIES)
    await within(sender.wait_for_requests(4))
    await stop(pool, running)

    # The first look, at an empty queue; the quiet webhook's express claim; the claimer's, woken by the
    # notification naming none.
    assert tally.claims == [(QUEUE_CLAIM, 0), (EXPRESS_CLAIM, 1), (QUEUE_CLAIM, 3)]


async def test_a_claim_the_database_did_not_answer_is_not_reported(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    monkeypatch: pytest.MonkeyPatch,
    recheck_after_an_hour: None,
) -> None:
    refuse_first(queue, "claim_named", OUTAGE, monkeypatch)
    quiet, _ = await subscriber(webhooks)
    tally = TalliedBatches()
    pool = make_pool(workers=4, observer=tally)
    running = await started_asleep(pool, queue)

    queue.add(quiet)
    notifications.notify(Topic.DELIVERIES, quiet.id)  # its express claim fails: the claimer's claim takes it
    await within(sender.wait_for_requests(1))
    await stop(pool, running)

    assert tally.claims == [(QUEUE_CLAIM, 0), (QUEUE_CLAIM, 1)]


async def test_the_recorder_reports_each_batch_written_once_with_its_attempts(
    webhook_store: FakeWebhooks,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", 0.0)

    class RefusesOnce(FakeDeliveryQueue):
        refused = False

        async def record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> RecordedBatch:
            if not self.refused:
                self.refused = True
                raise OUTAGE
            return await super().record(batch)

    queue = RefusesOnce(webhook_store, clock)
    webhook, _ = await subscriber(webhooks)
    for _ in range(4):
        queue.add(webhook)
    claimed = await queue.claim(4, per_webhook=4, per_tenant=100)
    tally = TalliedBatches()
    recorder = AttemptRecorder(queue, notifications, observer=tally)
    recorder.start()
    record = AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", False, None, clock())

    for delivery in claimed[:3]:  # in one turn of the loop: one batch, refused once and written on its retry
        recorder.submit(delivery, record)
    await within(recorder.flush())
    recorder.submit(claimed[3], record)
    await within(recorder.flush())
    await recorder.stop()

    assert tally.batches == [3, 1]
    assert len(queue.attempts) == 4


async def test_an_express_claim_that_failed_leaves_its_webhook_to_the_claimers_next_claim(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    monkeypatch: pytest.MonkeyPatch,
    recheck_after_an_hour: None,
) -> None:
    refuse_first(queue, "claim_named", OUTAGE, monkeypatch)
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)

    delivery_id = queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)

    await within(sender.wait_for_requests(1))
    assert queue.claimed_fresh[-1] == [webhook.id]  # the claim of the queue that took it looked at it first
    await until(lambda: len(queue.attempts) == 1)
    assert queue.attempts[0][0].delivery_id == delivery_id
    await stop(pool, running)


async def test_a_named_webhook_whose_express_claim_its_cap_cut_short_is_claimed_once_the_cap_frees(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    # Quiet here, but its one place is leased: the express claim comes back without it. The claimer
    # must learn it waits for the cap, or the lease's recorded batch (the claimer asleep with nothing
    # due) does not wake it.
    webhook, attempted = await one_leased(webhooks, queue)
    pool = make_pool(workers=2, per_webhook=1)
    running = await started_asleep(pool, queue)  # nothing due before that lease ends: asleep

    queue.looked_ahead.clear()
    waiting = queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)
    await within(queue.looked_ahead.wait())  # the claimer looked again: one is due, held back by the cap
    assert queue.claimed_named == [[webhook.id]]
    recorder.submit(attempted, finished(clock))  # the lease ends: the cap frees

    await within(sender.wait_for_requests(1))
    await until(lambda: len(queue.attempts) == 2)
    assert queue.attempts[-1][0].delivery_id == waiting
    await stop(pool, running)


@pytest.mark.parametrize("payloads", [["{id} {id}"], ["{id}", "{id}"]], ids=["in one notification", "in two"])
async def test_a_quiet_webhook_named_twice_before_its_express_claim_gets_both_deliveries_claimed(
    payloads: list[str],
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    recheck_after_an_hour: None,
) -> None:
    # An express claim takes each named webhook's oldest delivery: the second is the claimer's.
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)

    queue.add(webhook)
    queue.add(webhook)
    for payload in payloads:
        notifications.notify(Topic.DELIVERIES, payload.format(id=webhook.id))

    await within(sender.wait_for_requests(2))
    await stop(pool, running)
    assert len(queue.attempts) == 2


# -- what a recorded batch wakes the claimer for ----------------------------------------------------------


def finished(clock: FakeClock) -> AttemptRecord:
    return AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", False, None, clock())


async def test_a_batch_recorded_while_nothing_is_due_does_not_wake_the_claimer(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    # Every recorded batch woke the claimer: at ~500 deliveries/s, 613 of 1,019 claims came back
    # empty, each with its next-due lookup (~100 µs of PostgreSQL per delivery).
    webhook, attempted = await one_leased(webhooks, queue)  # its POST ends as the pool sleeps
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)  # nothing due before that lease ends: asleep
    claims = len(queue.claim_limits)

    recorder.submit(attempted, finished(clock))
    await within(recorder.flush())
    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES)
    await within(sender.wait_for_requests(1))

    assert len(queue.claim_limits) == claims + 1  # the notification's claim, and none for the batch
    await stop(pool, running)


async def test_a_batch_recorded_while_a_due_delivery_waits_for_its_webhooks_cap_wakes_the_claimer(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    webhook, attempted = await one_leased(webhooks, queue)
    waiting = queue.add(webhook)
    pool = make_pool(workers=2, per_webhook=1)
    running = await started_asleep(pool, queue)  # one due, held back by the cap: asleep

    recorder.submit(attempted, finished(clock))  # the lease ends: the cap frees

    await within(sender.wait_for_requests(1))
    await until(lambda: len(queue.attempts) == 2)
    assert queue.attempts[-1][0].delivery_id == waiting
    await stop(pool, running)


async def test_a_batch_recorded_after_a_claim_the_cap_cut_short_wakes_the_claimer(
    queue: FakeDeliveryQueue, make_pool: PoolFactory, sender: FakeSender, webhooks: Webhooks
) -> None:
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    queue.add(webhook)
    pool = make_pool(workers=2, per_webhook=1)  # the first claim takes one of the two
    running = asyncio.create_task(pool.run())

    await within(sender.wait_for_requests(2))  # the first one's batch freed the cap for the second
    await until(lambda: len(queue.attempts) == 2)
    await stop(pool, running)


async def test_a_batch_that_makes_a_retry_due_before_the_claimer_would_wake_wakes_it(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    _, attempted = await one_leased(webhooks, queue)
    delivery_id = attempted.delivery_id
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)  # asleep until that lease ends (or the hour's poll)

    retry_now = AttemptRecord(Outcome.FAILED, 503, 5, "HTTP 503", "", False, clock(), clock())
    recorder.submit(attempted, retry_now)

    await within(sender.wait_for_requests(1))
    await until(lambda: len(queue.attempts) == 2)
    attempts = [(claimed.delivery_id, claimed.attempt) for claimed, _ in queue.attempts]
    assert attempts == [(delivery_id, 1), (delivery_id, 2)]
    await stop(pool, running)


async def test_a_batch_that_ends_a_fifo_head_gets_the_next_one_claimed_by_its_notification(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
    recheck_after_an_hour: None,
) -> None:
    webhook, _ = await subscriber(webhooks, replace(ORDERS, ordering=Ordering.FIFO))
    queue.add(webhook)
    [head] = await queue.claim(1, per_webhook=1, per_tenant=1000)
    following = queue.add(webhook)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)
    assert queue.held_back == 1  # parked behind the head: asleep until its lease ends

    recorder.submit(head, finished(clock))

    await within(sender.wait_for_requests(1))
    await until(lambda: len(queue.attempts) == 2)
    assert queue.attempts[-1][0].delivery_id == following
    await stop(pool, running)


CONFLICT = TransactionConflict(
    "transaction rolled back to settle a conflict: deadlock (SQLSTATE 40P01, DeadlockDetected)"
)


def refuse_first(queue: FakeDeliveryQueue, method: str, refusal: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue's first call of `method` (claim, claim_named) fails with `refusal`; later ones claim."""
    claim = getattr(queue, method)
    refused: list[Exception] = []

    async def first_refused(*args: Any, **kwargs: Any) -> list[ClaimedDelivery]:
        if not refused:
            refused.append(refusal)
            raise refusal
        result: list[ClaimedDelivery] = await claim(*args, **kwargs)
        return result

    monkeypatch.setattr(queue, method, first_refused)


def claim_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage().startswith("claiming deliveries failed")]


OUTAGE = Unavailable("database unavailable: connection refused", retry_after_seconds=1, dependency="database")


@pytest.mark.parametrize("method", ["claim", "claim_named"], ids=["claim", "express claim"])
@pytest.mark.parametrize(
    ("refusal", "reason"), [(CONFLICT, "deadlock"), (OUTAGE, "connection refused")], ids=["conflict", "outage"]
)
async def test_a_claim_that_met_a_database_conflict_or_outage_is_one_warning_line_and_the_next_claim_takes_the_delivery(
    method: str,
    refusal: Exception,
    reason: str,
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="webhookd.pool")
    refuse_first(queue, method, refusal, monkeypatch)
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)  # the first claim found nothing: asleep

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id if method == "claim_named" else "")

    await within(sender.wait_for_requests(1))
    await stop(pool, running)
    assert len(sender.requests) == 1
    [line] = claim_failures(caplog)
    assert line.levelno == logging.WARNING
    assert line.exc_info is None, "a conflict or an outage is expected: no traceback"
    assert reason in line.reason  # type: ignore[attr-defined]


async def test_a_claim_that_failed_unexpectedly_is_logged_with_its_traceback(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse_first(queue, "claim", RuntimeError("a bug"), monkeypatch)
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=2)
    running = await started_asleep(pool, queue)

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES)

    await within(sender.wait_for_requests(1))
    await stop(pool, running)
    [line] = claim_failures(caplog)
    assert line.levelno == logging.ERROR
    assert line.exc_info is not None


async def test_a_quiet_webhooks_new_delivery_is_claimed_while_a_claim_of_the_queue_is_still_running(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under load a claim of the whole queue takes tens of milliseconds; a quiet webhook's delivery
    # published meanwhile used to wait for it to end and then for a claim of its own.
    busy, _ = await subscriber(webhooks)
    quiet, _ = await subscriber(webhooks, replace(ORDERS, name="quiet", url="https://quiet.example/hooks"))
    for _ in range(4):
        queue.add(busy)
    claim = queue.claim
    claiming = asyncio.Event()
    claim_ends = asyncio.Event()

    async def slow_claim(
        limit: int, *, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        claiming.set()
        await claim_ends.wait()
        return await claim(limit, per_webhook=per_webhook, per_tenant=per_tenant, fresh_webhooks=fresh_webhooks)

    monkeypatch.setattr(queue, "claim", slow_claim)
    pool = make_pool(workers=2)
    running = asyncio.create_task(pool.run())
    await within(claiming.wait())

    queue.add(quiet)
    notifications.notify(Topic.DELIVERIES, quiet.id)

    await within(sender.wait_for_requests(1))
    assert [request.url for request in sender.requests] == ["https://quiet.example/hooks"]
    assert not claim_ends.is_set()
    claim_ends.set()
    await within(sender.wait_for_requests(5))
    await stop(pool, running)
    assert len(queue.attempts) == 5


async def test_a_webhook_with_one_delivery_running_here_is_still_quiet(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
) -> None:
    # A webhook that gets a delivery every few tens of milliseconds often still has the last one
    # running: its new one is no backlog to wait for a batch's room.
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    gate = sender.hold(URL)
    pool = make_pool(workers=2)
    running = asyncio.create_task(pool.run())
    await within(sender.wait_for_requests(1))

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)

    await within(sender.wait_for_requests(2))
    gate.set()
    await stop(pool, running)
    assert queue.claimed_named == [[webhook.id]]


async def test_a_named_webhook_this_process_holds_more_of_is_handed_to_the_next_claim(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
) -> None:
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    queue.add(webhook)
    gate = sender.hold(URL)
    pool = make_pool(workers=2)
    running = asyncio.create_task(pool.run())
    await within(sender.wait_for_requests(2))  # both are being attempted here

    queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)

    await until(lambda: pool.in_flight == 3)
    gate.set()
    await stop(pool, running)
    assert queue.claimed_named == [] and [webhook.id] in queue.claimed_fresh


async def test_on_stop_a_delivery_in_flight_finishes_and_what_waits_is_given_back(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    first, second = queue.add(webhook), queue.add(webhook)
    receiver = sender.hold(URL)
    pool = make_pool(workers=1)
    running = asyncio.create_task(pool.run())
    await within(sender.wait_for_requests(1))

    pool.stop()
    # The receiver answers a moment later, while the pool waits out its grace period.
    asyncio.get_running_loop().call_later(0.05, receiver.set)
    await within(running)

    assert queue.deliveries[first].status is DeliveryStatus.SUCCEEDED
    assert len(sender.requests) == 1
    # Claimed ahead for the next free worker, never started: given back for another process at once.
    assert [claimed.delivery_id for claimed, _ in queue.releases] == [second]
    assert queue.deliveries[second].lease_token is None and queue.deliveries[second].attempts == 0


async def test_on_stop_a_delivery_past_the_grace_period_is_cancelled_and_released(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    delivery_id = queue.add(webhook)
    sender.hold(URL)  # never answers
    pool = make_pool(workers=1, grace_seconds=0.01)
    running = asyncio.create_task(pool.run())
    await within(sender.wait_for_requests(1))

    await stop(pool, running)

    assert queue.attempts == []
    assert [(claimed.delivery_id, after) for claimed, after in queue.releases] == [(delivery_id, timedelta(0))]
    delivery = queue.deliveries[delivery_id]
    assert (delivery.lease_token, delivery.next_attempt_at, delivery.attempts) == (None, clock(), 0)
    assert sender.in_flight == 0  # the POST was cancelled
    assert notifications.count(Topic.DELIVERIES) == 1  # another worker may take it at once
    assert pool.in_flight == 0


async def test_on_stop_a_delivery_claimed_but_not_started_is_released(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    webhook, _ = await subscriber(webhooks)
    delivery_id = queue.add(webhook)
    pool = make_pool(workers=1)
    claim = queue.claim

    async def claim_then_stop(
        limit: int, *, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        claimed = await claim(limit, per_webhook=per_webhook, per_tenant=per_tenant, fresh_webhooks=fresh_webhooks)
        pool.stop()  # the stop arrives while the claim is on its way back: no worker has the delivery yet
        return claimed

    monkeypatch.setattr(queue, "claim", claim_then_stop)

    await within(pool.run())

    assert sender.requests == [] and queue.attempts == []
    assert [(claimed.delivery_id, after) for claimed, after in queue.releases] == [(delivery_id, timedelta(0))]


async def test_on_stop_what_an_express_claim_brings_back_is_released(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    recheck_after_an_hour: None,
) -> None:
    webhook, _ = await subscriber(webhooks)
    pool = make_pool(workers=1)
    claim_named = queue.claim_named

    async def claim_then_stop(
        webhook_ids: Sequence[str], *, per_webhook: int, per_tenant: int
    ) -> list[ClaimedDelivery]:
        claimed = await claim_named(webhook_ids, per_webhook=per_webhook, per_tenant=per_tenant)
        pool.stop()
        return claimed

    monkeypatch.setattr(queue, "claim_named", claim_then_stop)
    running = await started_asleep(pool, queue)
    delivery_id = queue.add(webhook)
    notifications.notify(Topic.DELIVERIES, webhook.id)

    await within(running)

    assert sender.requests == [] and queue.attempts == []
    assert [(claimed.delivery_id, after) for claimed, after in queue.releases] == [(delivery_id, timedelta(0))]


async def test_a_delivery_that_waited_too_long_for_a_worker_is_given_back_unattempted(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks)
    first, second = queue.add(webhook), queue.add(webhook)
    receiver = sender.hold(URL)
    pool = make_pool(workers=1)
    running = asyncio.create_task(pool.run())
    await within(sender.wait_for_requests(1))
    await until(lambda: pool.in_flight == 2)  # the second claimed and queued behind the first

    clock.advance(pool_module.QUEUED_AT_MOST + timedelta(seconds=1))  # the first POST is that slow
    receiver.set()
    await until(lambda: len(queue.releases) == 1)
    await stop(pool, running)

    assert [claimed.delivery_id for claimed, _ in queue.releases] == [second]
    # Given back, not attempted: its first attempt, if any, comes from a later claim.
    assert queue.attempts[0][0].delivery_id == first
    assert all(claimed.lease_token != queue.releases[0][0].lease_token for claimed, _ in queue.attempts[1:])


async def test_a_delivery_that_raises_frees_its_worker(
    queue: FakeDeliveryQueue,
    make_pool: PoolFactory,
    sender: FakeSender,
    secret_store: FakeSecrets,
    webhooks: Webhooks,
    clock: FakeClock,
) -> None:
    corrupt, _ = await subscriber(webhooks, replace(ORDERS, url="https://corrupt.example/hooks"))
    secret_store.records[corrupt.vault_path] = {"secret": "not where the deliverer looks"}
    healthy, _ = await subscriber(webhooks)
    stuck = queue.add(corrupt, due=clock() - timedelta(seconds=1))  # claimed first
    queue.add(healthy)
    pool = make_pool(workers=1)
    running = asyncio.create_task(pool.run())

    await within(sender.wait_for_requests(1))  # on the one worker, which the corrupt delivery freed
    await stop(pool, running)

    assert [request.url for request in sender.requests] == [URL]
    assert queue.deliveries[stuck].lease_token is not None  # neither recorded nor released: its lease runs out


# -- the recorder ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        Unavailable("database unavailable"),
        # A deadlock or serialization failure rolled the batch back: written again, it goes through.
        TransactionConflict("transaction rolled back to settle a conflict: deadlock (SQLSTATE 40P01)"),
    ],
    ids=["unavailable", "conflict"],
)
async def test_the_recorder_retries_a_batch_the_database_failed_to_write(
    refusal: DomainError,
    webhook_store: FakeWebhooks,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", 0.0)

    class FlakyQueue(FakeDeliveryQueue):
        refusals = 2

        async def record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> RecordedBatch:
            if self.refusals:
                self.refusals -= 1
                raise refusal
            return await super().record(batch)

    queue = FlakyQueue(webhook_store, clock)
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    [claimed] = await queue.claim(1, per_webhook=1, per_tenant=100)
    recorder = AttemptRecorder(queue, notifications)
    recorder.start()

    recorder.submit(claimed, AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", False, None, clock()))
    await within(recorder.flush())
    await recorder.stop()

    assert queue.refusals == 0 and len(queue.attempts) == 1
    assert notifications.count(Topic.ATTEMPTS) == 1
    assert notifications.payloads(Topic.WEBHOOKS)[-1] == webhook.id  # its statistics changed: caches forget it


async def test_the_recorder_counts_attempts_whose_lease_was_lost(
    queue: FakeDeliveryQueue, recorder: AttemptRecorder, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks)
    queue.add(webhook)
    [claimed] = await queue.claim(1, per_webhook=1, per_tenant=100)
    clock.advance(timedelta(minutes=5))
    [taken_over] = await queue.claim(1, per_webhook=1, per_tenant=100)
    record = AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", False, None, clock())

    recorder.submit(claimed, record)
    recorder.submit(taken_over, record)
    await within(recorder.flush())

    assert recorder.lost_leases == 1
    assert len(queue.attempts) == 2
