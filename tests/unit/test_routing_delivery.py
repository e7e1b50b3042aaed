"""Delivery past the anchors, on fakes: ed25519 signatures, send slots of rate-limited webhooks, FIFO heads
and the claimer moving what they hold back out of its way."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
from webhookd.delivery.attempt import Deliverer
from webhookd.delivery.pool import DeliveryPool
from webhookd.delivery.recorder import AttemptRecorder
from webhookd.domain import routing
from webhookd.domain.deliveries import AttemptResult
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.webhooks import Ordering, SignatureScheme, Webhook, WebhookSpec
from webhookd.ports import Topic
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
URL = "https://receiver.example/hooks"
ORDERS = WebhookSpec(name="orders", url=URL)
FAILED = AttemptResult(Outcome.FAILED, 500, latency_ms=3, error="HTTP 500")


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
def slept() -> list[float]:
    return []


@pytest.fixture
def deliverer(
    queue: FakeDeliveryQueue,
    secret_store: FakeSecrets,
    sender: FakeSender,
    recorder: AttemptRecorder,
    notifications: FakeNotifications,
    clock: FakeClock,
    slept: list[float],
) -> Deliverer:
    async def sleep(seconds: float) -> None:
        """Time passing, as the worker waits for a send slot."""
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return Deliverer(queue, SigningSecrets(secret_store), sender, recorder, notifications, clock=clock, sleep=sleep)


async def subscriber(webhooks: Webhooks, **changes: object) -> tuple[Webhook, str]:
    webhook, handed_out, _ = await webhooks.create(TENANT, replace(ORDERS, **changes), None)  # type: ignore[arg-type]
    return webhook, handed_out


def v1a_signatures(header: str) -> list[bytes]:
    return [base64.b64decode(entry.removeprefix("v1a,")) for entry in header.split()]


def verifies(public_key: str, signature: bytes, signed: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return False
    return True


# -- ed25519 ---------------------------------------------------------------------------------------------


async def test_an_ed25519_delivery_verifies_with_the_public_key_from_create(
    queue: FakeDeliveryQueue, deliverer: Deliverer, recorder: AttemptRecorder, sender: FakeSender, webhooks: Webhooks
) -> None:
    webhook, public_key = await subscriber(webhooks, signature_scheme=SignatureScheme.ED25519)
    queue.add(webhook, body=b'{"type":"rfp.created"}')
    [claimed] = await queue.claim(1, per_webhook=1, per_tenant=10)

    await deliverer.deliver(claimed)

    [request] = sender.requests
    headers = request.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
    [signature] = v1a_signatures(headers["webhook-signature"])
    assert public_key.startswith("whpk_")
    assert verifies(public_key, signature, signed)
    assert not verifies(public_key, signature, signed + b" ")


async def test_during_an_ed25519_rotation_either_key_verifies(
    queue: FakeDeliveryQueue, deliverer: Deliverer, sender: FakeSender, webhooks: Webhooks
) -> None:
    webhook, old_key = await subscriber(webhooks, signature_scheme=SignatureScheme.ED25519)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    queue.add(rotation.webhook)
    [claimed] = await queue.claim(1, per_webhook=1, per_tenant=10)

    await deliverer.deliver(claimed)

    [request] = sender.requests
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    new_signature, old_signature = v1a_signatures(request.headers["webhook-signature"])
    assert rotation.signing_secret == "" and rotation.public_key.startswith("whpk_")
    assert verifies(rotation.public_key, new_signature, signed)
    assert verifies(old_key, old_signature, signed)


# -- send slots ------------------------------------------------------------------------------------------


async def test_a_rate_limited_webhooks_claims_get_slots_a_fraction_of_a_second_apart(
    queue: FakeDeliveryQueue, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks, rate_limit_per_second=4)
    for _ in range(6):
        queue.add(webhook)

    claimed = await queue.claim(10, per_webhook=10, per_tenant=10)

    assert [delivery.send_at for delivery in claimed] == [clock.now + timedelta(seconds=n / 4) for n in range(4)]
    assert await queue.claim(10, per_webhook=10, per_tenant=10) == []  # the next slot is past the horizon
    clock.advance(timedelta(seconds=1))
    assert len(await queue.claim(10, per_webhook=10, per_tenant=10)) == 2


async def test_the_worker_waits_for_the_slot_and_sends_then(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
    slept: list[float],
) -> None:
    webhook, _ = await subscriber(webhooks, rate_limit_per_second=2)
    queue.add(webhook)
    queue.add(webhook)
    first, second = await queue.claim(2, per_webhook=2, per_tenant=10)

    await deliverer.deliver(first)
    await deliverer.deliver(second)
    await within(recorder.flush())

    assert slept == [0.5]  # the second slot, half a second after the first
    assert len(sender.requests) == 2 and len(queue.attempts) == 2


async def test_a_worker_late_for_its_slot_gives_the_delivery_back_without_an_attempt(
    queue: FakeDeliveryQueue, deliverer: Deliverer, sender: FakeSender, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks, rate_limit_per_second=2)
    delivery_id = queue.add(webhook)
    [claimed] = await queue.claim(1, per_webhook=1, per_tenant=10)
    clock.advance(routing.RATE_SLOT_TOLERANCE + timedelta(milliseconds=1))  # a busy worker takes it up late

    await deliverer.deliver(claimed)

    assert sender.requests == [] and queue.attempts == []
    delivery = queue.deliveries[delivery_id]
    assert (delivery.status, delivery.attempts, delivery.lease_token) == (DeliveryStatus.PENDING, 0, None)
    assert delivery.next_attempt_at == clock.now


# -- FIFO ------------------------------------------------------------------------------------------------


async def test_a_fifo_webhook_sends_its_head_alone_and_a_failing_head_blocks_the_rest(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks, ordering=Ordering.FIFO)
    first, *_ = (queue.add(webhook) for _ in range(3))

    [head] = await queue.claim(10, per_webhook=10, per_tenant=10)
    assert head.delivery_id == first and head.fifo
    assert await queue.claim(10, per_webhook=10, per_tenant=10) == []  # one at a time

    sender.result = FAILED
    await deliverer.deliver(head)
    await within(recorder.flush())

    assert await queue.claim(10, per_webhook=10, per_tenant=10) == []  # the head waits for its retry: all wait
    clock.advance(timedelta(minutes=1))
    [again] = await queue.claim(10, per_webhook=10, per_tenant=10)
    assert (again.delivery_id, again.attempt) == (first, 2)


async def test_when_a_fifo_head_ends_the_next_one_is_due_at_once(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks, ordering=Ordering.FIFO)
    first, second, third = (queue.add(webhook) for _ in range(3))
    [head] = await queue.claim(10, per_webhook=10, per_tenant=10)
    head_due = queue.deliveries[first].next_attempt_at  # the end of its lease

    assert await queue.hold_back(100) == 2  # the two behind the head wait for it
    assert queue.deliveries[second].next_attempt_at == queue.deliveries[third].next_attempt_at == head_due

    await deliverer.deliver(head)
    await within(recorder.flush())

    assert queue.deliveries[second].next_attempt_at == clock.now
    assert notifications.count(Topic.DELIVERIES) == 1  # every process's claimer hears of it
    [following] = await queue.claim(10, per_webhook=10, per_tenant=10)
    assert following.delivery_id == second


async def test_rate_limited_deliveries_past_the_horizon_wait_for_their_slot(
    queue: FakeDeliveryQueue, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, _ = await subscriber(webhooks, rate_limit_per_second=2)
    waiting = [queue.add(webhook) for _ in range(5)]

    assert await queue.hold_back(100) == 3

    due = [queue.deliveries[delivery_id].next_attempt_at for delivery_id in waiting]
    assert due == [clock.now, clock.now] + [clock.now + timedelta(seconds=n / 2) for n in (2, 3, 4)]


async def test_the_claimer_moves_held_back_deliveries_when_it_finds_due_ones_it_cannot_take(
    queue: FakeDeliveryQueue,
    deliverer: Deliverer,
    recorder: AttemptRecorder,
    notifications: FakeNotifications,
    sender: FakeSender,
    webhooks: Webhooks,
    clock: FakeClock,
) -> None:
    webhook, _ = await subscriber(webhooks, ordering=Ordering.FIFO)
    published = [queue.add(webhook) for _ in range(3)]
    receiver = sender.hold(URL)
    pool = DeliveryPool(
        queue,
        deliverer,
        recorder,
        notifications,
        workers=4,
        per_webhook=4,
        per_tenant=10,
        poll_seconds=3600,
        clock=clock,
    )
    running = asyncio.create_task(pool.run())

    await within(sender.wait_for_requests(1))
    notifications.notify(Topic.DELIVERIES)  # a publish elsewhere: the claimer looks again, finds nothing to take
    await until(lambda: queue.held_back == 2)  # due, not claimable behind the head: moved out of the way
    receiver.set()
    await within(sender.wait_for_requests(3))
    pool.stop()
    await within(running)

    assert [claimed.delivery_id for claimed, _ in queue.attempts] == published
