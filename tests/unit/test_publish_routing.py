"""services/events.py on fakes, past the event type: the catalog's schema and the event's channels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakes import FakeClock, FakeEvents, FakeEventTypes, FakeNotifications, FakeWebhooks
from webhookd.domain.errors import Invalid
from webhookd.domain.event_catalog import EventTypeSpec, PayloadMismatch
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook, WebhookSpec
from webhookd.services import events as events_module
from webhookd.services.event_types import EventTypes
from webhookd.services.events import Events
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
APP = Scope("tnt_a", app_id="app_1")
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"amount": {"type": "number", "minimum": 0}, "currency": {"enum": ["EUR", "USD"]}},
        "required": ["amount"],
    }
)


@pytest.fixture
def event_store(webhook_store: FakeWebhooks, notifications: FakeNotifications) -> FakeEvents:
    return FakeEvents(webhook_store, notifications)


@pytest.fixture
def event_types(webhook_store: FakeWebhooks, notifications: FakeNotifications) -> EventTypes:
    return EventTypes(FakeEventTypes(), webhook_store, notifications)


@pytest.fixture
def events(event_store: FakeEvents, clock: FakeClock, event_types: EventTypes) -> Events:
    return Events(event_store, max_payload_bytes=256 * 1024, schemas=event_types, clock=clock)


async def subscriber(webhooks: Webhooks, *channels: str, scope: Scope = TENANT) -> Webhook:
    spec = WebhookSpec(name="orders", url="https://receiver.example/hooks", event_types=("rfp.*",), channels=channels)
    return (await webhooks.create(scope, spec, None))[0]


async def publish(events: Events, payload: Any, *, scope: Scope = TENANT, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"idempotency_key": None, "webhook_id": None} | overrides
    return await events.publish(scope, event_type="rfp.created", payload_json=json.dumps(payload), **arguments)


async def test_a_payload_matching_its_types_schema_is_queued(
    events: Events, event_types: EventTypes, webhooks: Webhooks
) -> None:
    await event_types.create(TENANT, EventTypeSpec(name="rfp.created", schema_json=SCHEMA))
    await subscriber(webhooks)

    published = await publish(events, {"amount": 12.5, "currency": "EUR"})

    assert published.deliveries_queued == 1


async def test_a_mismatch_is_refused_naming_each_pointer_and_nothing_is_stored(
    events: Events, event_types: EventTypes, webhooks: Webhooks, event_store: FakeEvents
) -> None:
    await event_types.create(TENANT, EventTypeSpec(name="rfp.created", schema_json=SCHEMA))
    await subscriber(webhooks)

    with pytest.raises(PayloadMismatch) as raised:
        await publish(events, {"amount": -1, "currency": "GBP"})

    assert isinstance(raised.value, Invalid) and raised.value.reason == "PAYLOAD_SCHEMA_MISMATCH"
    assert [(v.field, v.description.split(":")[0]) for v in raised.value.violations] == [
        ("payload", "/amount"),
        ("payload", "/currency"),
    ]
    assert event_store.events == {}


async def test_a_type_without_an_entry_publishes_as_before(events: Events, webhooks: Webhooks) -> None:
    await subscriber(webhooks)

    assert (await publish(events, {"anything": ["goes"]})).deliveries_queued == 1


async def test_a_schema_applies_to_the_scope_whose_catalog_holds_it(
    events: Events, event_types: EventTypes, webhooks: Webhooks
) -> None:
    await event_types.create(APP, EventTypeSpec(name="rfp.created", schema_json=SCHEMA))
    await subscriber(webhooks, scope=APP)

    with pytest.raises(PayloadMismatch):
        await publish(events, {}, scope=APP)
    assert (await publish(events, {})).deliveries_queued == 1  # the tenant's catalog has no entry


async def test_a_large_payload_is_checked_off_the_event_loop(
    events: Events, event_types: EventTypes, webhooks: Webhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    await event_types.create(TENANT, EventTypeSpec(name="rfp.created", schema_json=SCHEMA))
    in_threads: list[Any] = []

    async def to_thread(function: Any, *args: Any) -> Any:
        in_threads.append(function)
        return function(*args)

    monkeypatch.setattr(events_module.asyncio, "to_thread", to_thread)

    with pytest.raises(PayloadMismatch):
        await publish(events, {"amount": -1, "notes": "x" * events_module.SCHEMA_CHECK_INLINE_BYTES})
    assert len(in_threads) == 1
    await publish(events, {"amount": 1})
    assert len(in_threads) == 1


# -- channels --------------------------------------------------------------------------------------------


async def test_a_webhook_with_channels_gets_only_events_on_one_of_them(
    events: Events, webhooks: Webhooks, event_store: FakeEvents
) -> None:
    eu = await subscriber(webhooks, "eu", "project:7")
    us = await subscriber(webhooks, "us")
    everything = await subscriber(webhooks)

    async def receivers(*channels: str) -> set[str]:
        published = await publish(events, {}, channels=channels)
        return set(event_store.events[published.event_id].webhook_ids)

    assert await receivers("eu") == {eu.id, everything.id}
    assert await receivers("us", "project:7") == {eu.id, us.id, everything.id}
    assert await receivers() == {everything.id}


async def test_channels_are_checked_and_deduplicated(events: Events, event_store: FakeEvents) -> None:
    with pytest.raises(Invalid) as raised:
        await publish(events, {}, channels=("ok", "", "has space", *(f"c{n}" for n in range(10))))

    fields = [violation.field for violation in raised.value.violations]
    assert fields == ["channels", "channels[1]", "channels[2]"]
    published = await publish(events, {}, channels=("eu", "eu"))
    assert event_store.events[published.event_id].event.channels == ("eu",)
