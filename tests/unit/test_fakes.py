"""The fakes stay true to the ports: the same signatures, and the adapters' semantics where they are subtle."""

from __future__ import annotations

import inspect
import typing
from datetime import timedelta

import pytest

from fakes import (
    FakeClock,
    FakeDeliveryQueue,
    FakeEvents,
    FakeEventTypes,
    FakeHistory,
    FakeInbound,
    FakeInboundRequest,
    FakeLifecycle,
    FakeNotifications,
    FakePingBuckets,
    FakePingRecords,
    FakeSecretOwners,
    FakeSecrets,
    FakeSender,
    FakeWebhooks,
)
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.errors import Aborted, AlreadyExists, NotFound
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.domain.webhooks import WebhookSpec
from webhookd.ports import (
    Clock,
    DeliveryQueue,
    EventRepository,
    EventTypeRepository,
    HistoryRepository,
    InboundRepository,
    InboundRequest,
    Notifications,
    PingBuckets,
    PingRecords,
    SecretOwners,
    SecretStore,
    Sender,
    Topic,
    WebhookRepository,
)
from webhookd.services.webhooks import Webhooks


def _each_fake_typed_as_its_port() -> None:
    """Never called: mypy, when it checks the tests, refuses a fake that drifted from its port."""
    rows = FakeWebhooks()
    fake_clock = FakeClock()
    webhook_repository: WebhookRepository = rows
    event_repository: EventRepository = FakeEvents(rows, FakeNotifications())
    event_type_repository: EventTypeRepository = FakeEventTypes()
    history_repository: HistoryRepository = FakeHistory(rows)
    inbound_repository: InboundRepository = FakeInbound(rows)
    inbound_request: InboundRequest = FakeInboundRequest(b"", {})
    delivery_queue: DeliveryQueue = FakeDeliveryQueue(rows, fake_clock)
    secret_store: SecretStore = FakeSecrets()
    secret_owners: SecretOwners = FakeSecretOwners(rows)
    sender: Sender = FakeSender()
    notifications: Notifications = FakeNotifications()
    clock: Clock = fake_clock
    ping_buckets: PingBuckets = FakePingBuckets(fake_clock)
    ping_records: PingRecords = FakePingRecords()
    del ping_buckets, ping_records
    del webhook_repository, event_repository, event_type_repository, history_repository, inbound_repository
    del inbound_request
    del delivery_queue, secret_store, secret_owners, sender, notifications, clock


PORTS = [
    (WebhookRepository, FakeWebhooks),
    (EventRepository, FakeEvents),
    (EventTypeRepository, FakeEventTypes),
    (HistoryRepository, FakeHistory),
    (InboundRepository, FakeInbound),
    (InboundRequest, FakeInboundRequest),
    (DeliveryQueue, FakeDeliveryQueue),
    (SecretStore, FakeSecrets),
    (SecretOwners, FakeSecretOwners),
    (Sender, FakeSender),
    (Notifications, FakeNotifications),
    (PingBuckets, FakePingBuckets),
    (PingRecords, FakePingRecords),
]


def _members(port: type) -> dict[str, object]:
    return {name: value for name, value in vars(port).items() if not name.startswith("_")}


@pytest.mark.parametrize(("port", "fake"), PORTS, ids=[port.__name__ for port, _ in PORTS])
def test_each_fake_has_its_ports_methods_with_the_same_parameters(port: type, fake: type) -> None:
    """The runtime half of the typed assignments above: names, kinds, defaults and types of parameters."""
    for name, member in _members(port).items():
        implemented = getattr(fake, name, None)
        assert implemented is not None, f"{fake.__name__} lacks {port.__name__}.{name}"
        if isinstance(member, property):
            assert isinstance(implemented, property), f"{fake.__name__}.{name} must be a property"
            continue
        assert callable(member) and callable(implemented)
        wanted, found = inspect.signature(member), inspect.signature(implemented)
        assert [(p.name, p.kind, p.default is p.empty) for p in found.parameters.values()] == [
            (p.name, p.kind, p.default is p.empty) for p in wanted.parameters.values()
        ], f"{fake.__name__}.{name}{found} differs from {port.__name__}.{name}{wanted}"
        assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(member), name
        wanted_types = typing.get_type_hints(member)
        found_types = typing.get_type_hints(inspect.unwrap(implemented))
        if inspect.unwrap(implemented) is not implemented:  # an @asynccontextmanager's own return type differs
            del wanted_types["return"], found_types["return"]
        assert found_types == wanted_types, f"{fake.__name__}.{name} is typed differently from {port.__name__}"


# -- semantics the adapters give the ports ---------------------------------------------------------------

TENANT = Scope("tnt_a", person_id="person_1")
APP = Scope("tnt_a", app_id="app_1")
OTHER_APP = Scope("tnt_a", app_id="app_2")


async def test_an_apps_webhook_is_seen_by_its_app_and_its_tenant_but_not_another_app() -> None:
    store = FakeWebhooks()
    FakeLifecycle(FakeHistory(store))  # records what the store notes
    service = Webhooks(
        store,
        FakeSecrets(),
        FakeNotifications(),
        public_url="https://x",
        allow_insecure_urls=False,
    )
    webhook, _, _ = await service.create(APP, WebhookSpec(name="orders", url="https://receiver.example/a"), None)

    assert (await store.get(APP, webhook.id)).id == webhook.id
    assert (await store.get(TENANT, webhook.id)).id == webhook.id
    with pytest.raises(NotFound):
        await store.get(OTHER_APP, webhook.id)
    with pytest.raises(NotFound):
        await store.get(Scope("tnt_b"), webhook.id)


async def test_deleting_twice_returns_the_deleted_webhook_and_undeleting_a_live_one_already_exists(
    webhooks: Webhooks,
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, WebhookSpec(name="orders", url="https://receiver.example/a"), None)

    deleted = await webhooks.delete(TENANT, webhook.id, expected_version=1)
    again = await webhooks.delete(TENANT, webhook.id, expected_version=None)
    with pytest.raises(Aborted):
        await webhooks.delete(TENANT, webhook.id, expected_version=1)
    restored = await webhooks.undelete(TENANT, webhook.id)
    with pytest.raises(AlreadyExists):
        await webhooks.undelete(TENANT, webhook.id)

    assert deleted.is_deleted and deleted.version == 2
    assert again == deleted
    assert not restored.is_deleted and restored.version == 3


async def test_a_worker_that_lost_its_lease_logs_its_attempt_but_leaves_the_delivery(
    webhooks: Webhooks, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, WebhookSpec(name="orders", url="https://receiver.example/a"), None)
    queue = FakeDeliveryQueue(webhook_store, clock)
    delivery_id = queue.add(webhook)
    [first] = await queue.claim(10, per_webhook=10, per_tenant=100)
    clock.advance(timedelta(minutes=5))  # the lease ran out: another worker takes the delivery over
    [second] = await queue.claim(10, per_webhook=10, per_tenant=100)
    record = AttemptRecord(Outcome.SUCCEEDED, 200, 5, "", "", gone=False, next_attempt_at=None, occurred_at=clock())

    assert (await queue.record([(first, record)])).kept == [False]
    assert queue.deliveries[delivery_id].status is DeliveryStatus.PENDING
    assert (await queue.record([(second, record)])).kept == [True]
    assert queue.deliveries[delivery_id].status is DeliveryStatus.SUCCEEDED
    assert len(queue.attempts) == 2


async def test_a_claim_keeps_each_webhook_under_its_in_flight_cap(
    webhooks: Webhooks, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    busy, _, _ = await webhooks.create(TENANT, WebhookSpec(name="busy", url="https://receiver.example/a"), None)
    quiet, _, _ = await webhooks.create(TENANT, WebhookSpec(name="quiet", url="https://receiver.example/b"), None)
    queue = FakeDeliveryQueue(webhook_store, clock)
    for _ in range(3):
        queue.add(busy)
    queue.add(quiet)

    first = await queue.claim(10, per_webhook=2, per_tenant=100)
    second = await queue.claim(10, per_webhook=2, per_tenant=100)

    assert sorted(claimed.webhook_id for claimed in first) == sorted([busy.id, busy.id, quiet.id])
    assert second == []


async def test_a_notification_wakes_only_the_subscribers_of_its_topic() -> None:
    hub = FakeNotifications()
    async with hub.subscribe(Topic.ATTEMPTS) as attempts, hub.subscribe(Topic.INBOUND) as inbound:
        assert attempts.is_set() and inbound.is_set()  # listening started: read once
        attempts.clear()
        inbound.clear()
        hub.notify(Topic.ATTEMPTS)
        assert attempts.is_set() and not inbound.is_set()
    assert hub.subscribers(Topic.ATTEMPTS) == 0
    assert hub.notified == [(Topic.ATTEMPTS, "")]
