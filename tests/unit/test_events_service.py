"""services/events.py on fakes: what a publish checks, the body it builds, and when workers are woken."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fakes import FakeClock, FakeEvents, FakeNotifications, FakeWebhooks
from webhookd.domain.errors import Invalid, NotFound
from webhookd.domain.idempotency import MAX_KEY_LENGTH, WINDOW
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus
from webhookd.domain.topics import NAMED_WEBHOOKS_MAX, new_deliveries_payload
from webhookd.domain.webhooks import Direction, Webhook, WebhookSpec
from webhookd.services.events import Events
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
OTHER_TENANT = Scope("tnt_b")
LIMIT = 256  # bytes of the payload's JSON


@pytest.fixture
def event_store(webhook_store: FakeWebhooks, notifications: FakeNotifications) -> FakeEvents:
    return FakeEvents(webhook_store, notifications)


@pytest.fixture
def events(event_store: FakeEvents, clock: FakeClock) -> Events:
    return Events(event_store, max_payload_bytes=LIMIT, clock=clock)


async def subscriber(webhooks: Webhooks, *event_types: str, scope: Scope = TENANT) -> Webhook:
    spec = WebhookSpec(name="orders", url="https://receiver.example/hooks", event_types=event_types)
    return (await webhooks.create(scope, spec, None))[0]


async def publish(events: Events, event_type: str = "orders.created", **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"payload_json": '{"id":1}', "idempotency_key": None, "webhook_id": None} | overrides
    return await events.publish(TENANT, event_type=event_type, **arguments)


def violated_fields(error: Invalid) -> list[str]:
    return [violation.field for violation in error.violations]


async def test_every_invalid_field_is_named_and_nothing_is_stored(
    events: Events, event_store: FakeEvents, notifications: FakeNotifications
) -> None:
    with pytest.raises(Invalid) as raised:
        await publish(
            events,
            "Orders Created",
            idempotency_key="k" * (MAX_KEY_LENGTH + 1),
            payload_json=json.dumps({"x": "y" * LIMIT}),
        )

    assert violated_fields(raised.value) == ["event_type", "idempotency_key", "payload"]
    assert event_store.events == {} and notifications.notified == []


async def test_an_empty_idempotency_key_is_invalid_while_none_means_no_key(events: Events) -> None:
    with pytest.raises(Invalid) as raised:
        await publish(events, idempotency_key="")

    assert violated_fields(raised.value) == ["idempotency_key"]
    assert not (await publish(events, idempotency_key=None)).duplicate


async def test_the_payload_limit_counts_the_payloads_own_json_bytes(events: Events, event_store: FakeEvents) -> None:
    """What a publisher can compute from its own payload: its JSON text in UTF-8 bytes, not the
    envelope around it (type and timestamp add about 70 bytes to the delivered body)."""
    filler = "é" + "y" * (LIMIT - len('{"x":""}') - 2)  # é is 2 bytes, 1 character
    at_the_limit = json.dumps({"x": filler}, separators=(",", ":"), ensure_ascii=False)
    assert len(at_the_limit.encode()) == LIMIT

    published = await publish(events, payload_json=at_the_limit)
    with pytest.raises(Invalid) as raised:
        await publish(events, payload_json=at_the_limit[:-2] + 'y"}')

    assert len(event_store.events[published.event_id].event.body) > LIMIT
    assert violated_fields(raised.value) == ["payload"]
    assert f"is {LIMIT + 1} bytes of JSON; the limit is {LIMIT} bytes" in raised.value.message


async def test_the_body_is_the_standard_webhooks_envelope_built_once(
    events: Events, event_store: FakeEvents, clock: FakeClock
) -> None:
    published = await publish(events, payload_json='{"id":1,"name":"Zoë"}')

    body = event_store.events[published.event_id].event.body
    assert body == '{"type":"orders.created","timestamp":"2030-01-01T00:00:00Z","data":{"id":1,"name":"Zoë"}}'.encode()


async def test_the_payload_text_is_spliced_into_the_body_byte_for_byte(events: Events, event_store: FakeEvents) -> None:
    data = '{ "snowflake": 9007199254740993, "amount": 0.1, "exact": 1.10, "big": 1e300, "neg": -0 }'

    published = await publish(events, payload_json=data)

    body = event_store.events[published.event_id].event.body
    assert body.endswith(b',"data":' + data.encode() + b"}")
    assert json.loads(body)["data"] == json.loads(data)


@pytest.mark.parametrize(
    ("payload_json", "field", "words"),
    [
        ("[1, 2]", "payload_json", "must be a JSON object"),
        ('{"a": ', "payload_json", "is not JSON"),
        ('{"a": NaN}', "payload_json.a", "NaN is not a finite JSON number"),
        ('{"a": {"b": [1e400]}}', "payload_json.a.b[0]", "1e400 is not a finite JSON number"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "payload_json.a", "nests deeper than 100 levels"),
    ],
)
async def test_payload_json_that_is_not_a_finite_json_object_is_invalid_naming_where(
    event_store: FakeEvents, notifications: FakeNotifications, payload_json: str, field: str, words: str
) -> None:
    roomy = Events(event_store, max_payload_bytes=1024 * 1024)

    with pytest.raises(Invalid) as raised:
        await publish(roomy, payload_json=payload_json)

    [violation] = raised.value.violations
    assert violation.field == field and words in violation.description
    assert event_store.events == {}


async def test_a_publish_queues_a_delivery_for_each_subscriber(
    events: Events, event_store: FakeEvents, webhooks: Webhooks
) -> None:
    by_prefix = await subscriber(webhooks, "orders.*")
    by_wildcard = await subscriber(webhooks, "*")

    published = await publish(events)

    assert published.deliveries_queued == 2 and not published.duplicate
    assert set(published.queued_for) == set(event_store.events[published.event_id].webhook_ids)
    assert set(published.queued_for) == {by_prefix.id, by_wildcard.id}


async def test_a_publish_nobody_subscribes_to_queues_nothing(events: Events, webhooks: Webhooks) -> None:
    await subscriber(webhooks, "invoices.*")
    await subscriber(webhooks, "orders.created", scope=OTHER_TENANT)

    published = await publish(events, "orders.created")

    assert published.deliveries_queued == 0 and published.queued_for == ()


def test_a_publishs_notification_names_its_webhooks_unless_they_are_many() -> None:
    # Named, the workers claim those webhooks' first deliveries at once (express claims).
    assert new_deliveries_payload(["whk_a", "whk_b"]) == "whk_a whk_b"
    assert new_deliveries_payload([f"whk_{n}" for n in range(NAMED_WEBHOOKS_MAX)]).count(" ") == NAMED_WEBHOOKS_MAX - 1
    assert new_deliveries_payload([f"whk_{n}" for n in range(NAMED_WEBHOOKS_MAX + 1)]) == ""


async def test_live_outbound_subscribers_get_a_delivery_held_while_paused_skipped_while_disabled(
    events: Events, event_store: FakeEvents, webhooks: Webhooks, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    live = await subscriber(webhooks, "orders.created")
    paused = await subscriber(webhooks, "orders.created")
    webhook_store.rows[paused.id] = replace(paused, paused_at=clock())
    deleted = await subscriber(webhooks, "orders.created")
    await webhooks.delete(TENANT, deleted.id, expected_version=None)
    off, _, _ = await webhooks.create(
        TENANT, WebhookSpec(name="off", url="https://receiver.example/off", enabled=False), None
    )
    await webhooks.create(TENANT, WebhookSpec(name="in", url="", direction=Direction.INBOUND), None)

    published = await publish(events)

    stored = event_store.events[published.event_id]
    assert dict(zip(stored.webhook_ids, stored.statuses, strict=True)) == {
        live.id: DeliveryStatus.PENDING,
        paused.id: DeliveryStatus.HELD,
        off.id: DeliveryStatus.SKIPPED,
    }
    assert (published.deliveries_queued, published.deliveries_held, published.deliveries_skipped) == (1, 1, 1)


async def test_a_publisher_cannot_publish_the_services_own_event_types(events: Events) -> None:
    with pytest.raises(Invalid) as raised:
        await events.publish(
            TENANT, event_type="webhookd.webhook.paused", payload_json="{}", idempotency_key=None, webhook_id=None
        )
    assert [violation.field for violation in raised.value.violations] == ["event_type"]


async def test_a_duplicate_returns_the_first_event_and_stores_nothing(
    events: Events, event_store: FakeEvents, webhooks: Webhooks, clock: FakeClock
) -> None:
    await subscriber(webhooks, "*")
    first = await publish(events, idempotency_key="order-1")
    clock.advance(timedelta(hours=1))

    again = await publish(events, idempotency_key="order-1")

    assert again.duplicate and again.event_id == first.event_id
    assert again.deliveries_queued == first.deliveries_queued == 1
    assert list(event_store.events) == [first.event_id]


async def test_an_idempotency_key_is_forgotten_after_its_window(events: Events, clock: FakeClock) -> None:
    first = await publish(events, idempotency_key="order-1")
    clock.advance(WINDOW)

    later = await publish(events, idempotency_key="order-1")

    assert not later.duplicate and later.event_id != first.event_id


async def test_a_target_webhook_of_another_tenant_is_not_found(
    events: Events, event_store: FakeEvents, webhooks: Webhooks
) -> None:
    theirs = await subscriber(webhooks, "*", scope=OTHER_TENANT)

    with pytest.raises(NotFound):
        await publish(events, webhook_id=theirs.id)

    assert event_store.events == {}


async def test_a_targeted_publish_reaches_only_its_webhook(
    events: Events, event_store: FakeEvents, webhooks: Webhooks
) -> None:
    target = await subscriber(webhooks, "*")
    await subscriber(webhooks, "*")

    published = await publish(events, webhook_id=target.id)

    assert event_store.events[published.event_id].webhook_ids == (target.id,)
