"""services/event_types.py on fakes: the catalog's rules, and the schemas a publish is checked against."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fakes import (
    FakeClock,
    FakeEvents,
    FakeEventTypes,
    FakeNotifications,
    FakePingBuckets,
    FakePingRecords,
    FakeSecrets,
    FakeSender,
    FakeWebhooks,
    within,
)
from webhookd.domain.errors import Aborted, AlreadyExists, FailedPrecondition, Invalid, NotFound
from webhookd.domain.event_catalog import STRUCT_MAX_DEPTH, EventType, EventTypeSpec, validate_event_type_spec
from webhookd.domain.event_schemas import SCHEMA_MAX_PATTERNS
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import WebhookSpec
from webhookd.ports import Topic
from webhookd.services import event_types as event_types_service
from webhookd.services.event_schema_cache import EventSchemaCache
from webhookd.services.event_types import EventTypes
from webhookd.services.events import Events
from webhookd.services.pings import Pings
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
APP = Scope("tnt_a", app_id="app_1")
OTHER_TENANT = Scope("tnt_b")
SCHEMA = json.dumps({"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}}})
CREATED = EventTypeSpec(name="rfp.created", description=" An RFP was created. ", schema_json=SCHEMA)


@pytest.fixture
def catalog() -> FakeEventTypes:
    return FakeEventTypes()


@pytest.fixture
def cache() -> EventSchemaCache:
    return EventSchemaCache()


@pytest.fixture
def event_types(
    catalog: FakeEventTypes,
    webhook_store: FakeWebhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    cache: EventSchemaCache,
) -> EventTypes:
    return EventTypes(catalog, webhook_store, notifications, cache=cache, clock=clock)


def changes(values: Mapping[str, object]) -> Callable[[list[str]], dict[str, object]]:
    return lambda paths: {
        {"schema": "schema_json", "example": "example_json"}.get(path, path): values[path] for path in paths
    }


async def test_create_stamps_the_entry_and_tells_every_process(
    event_types: EventTypes, notifications: FakeNotifications, clock: FakeClock
) -> None:
    entry = await event_types.create(TENANT, CREATED)

    assert entry.id.startswith("etp_") and entry.version == 1
    assert (entry.tenant_id, entry.app_id, entry.created_by) == ("tnt_a", None, "person_1")
    assert entry.spec.description == "An RFP was created."
    assert entry.created_at == clock.now
    assert notifications.payloads(Topic.EVENT_TYPES) == ["rfp.created"]


async def test_a_name_is_held_once_per_scope(event_types: EventTypes) -> None:
    await event_types.create(TENANT, CREATED)

    with pytest.raises(AlreadyExists):
        await event_types.create(TENANT, CREATED)
    assert (await event_types.create(APP, CREATED)).app_id == "app_1"
    assert (await event_types.create(OTHER_TENANT, CREATED)).tenant_id == "tnt_b"


async def test_every_problem_of_an_entry_is_named_at_once(event_types: EventTypes) -> None:
    bad = EventTypeSpec(name="RFP Created", description="x" * 2001, schema_json='{"type": 3}', example_json="[1]")

    with pytest.raises(Invalid) as raised:
        await event_types.create(TENANT, bad)

    fields = [violation.field for violation in raised.value.violations]
    assert fields == ["event_type.name", "event_type.description", "event_type.schema", "event_type.example"]


async def test_the_example_must_match_the_schema(event_types: EventTypes) -> None:
    with pytest.raises(Invalid) as raised:
        await event_types.create(TENANT, replace(CREATED, example_json='{"amount": -1}'))

    [violation] = raised.value.violations
    assert violation.field == "event_type.example"
    assert "/amount: -1 is less than the minimum of 0" in violation.description
    assert (await event_types.create(TENANT, replace(CREATED, example_json='{"amount": 1}'))).spec.example_json


async def test_an_example_that_leads_into_a_ref_loop_is_refused_on_the_schema(event_types: EventTypes) -> None:
    looping = json.dumps(
        {"properties": {"x": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}}
    )

    with pytest.raises(Invalid) as raised:
        await event_types.create(TENANT, replace(CREATED, schema_json=looping, example_json='{"x": 1}'))

    [violation] = raised.value.violations
    assert violation.field == "event_type.schema"
    assert "cannot be applied to the example: its $refs loop back" in violation.description


async def test_json_that_is_not_json_is_named(event_types: EventTypes) -> None:
    with pytest.raises(Invalid) as raised:
        await event_types.create(TENANT, replace(CREATED, schema_json="{nope"))

    assert raised.value.violations[0].field == "event_type.schema"
    assert "is not JSON" in raised.value.violations[0].description


async def test_a_schema_or_example_deeper_than_a_struct_carries_is_refused(event_types: EventTypes) -> None:
    """Both go out as Structs too, which no client decodes much past STRUCT_MAX_DEPTH levels."""

    def nested(levels: int) -> str:
        return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)

    deepest = replace(CREATED, schema_json=f'{{"default": {nested(STRUCT_MAX_DEPTH - 1)}}}')
    entry = await event_types.create(TENANT, replace(deepest, example_json=nested(STRUCT_MAX_DEPTH)))
    too_deep = f'{{"default": {nested(STRUCT_MAX_DEPTH)}}}'

    with pytest.raises(Invalid) as created:
        deeper_entry = replace(CREATED, name="rfp.deeper", schema_json=too_deep)
        await event_types.create(TENANT, replace(deeper_entry, example_json=nested(STRUCT_MAX_DEPTH + 1)))
    with pytest.raises(Invalid) as updated:
        await event_types.update(
            TENANT, entry.id, expected_version=None, paths=["schema"], changes_for=changes({"schema": too_deep})
        )

    deeper = f"nests deeper than {STRUCT_MAX_DEPTH} levels"
    assert {(v.field, v.description) for v in created.value.violations} == {
        ("event_type.schema.default", deeper),
        ("event_type.example.a", deeper),
    }
    assert [(v.field, v.description) for v in updated.value.violations] == [("event_type.schema.default", deeper)]


async def test_a_schema_over_the_size_limits_is_refused_on_create_and_update(event_types: EventTypes) -> None:
    """Checking a schema costs CPU per subschema and regex character: the count is bounded, by name."""
    regexes = {f"p{i}": {"type": "string", "pattern": f"^x{i}$"} for i in range(SCHEMA_MAX_PATTERNS + 1)}
    too_many = json.dumps({"type": "object", "properties": regexes})
    entry = await event_types.create(TENANT, CREATED)

    with pytest.raises(Invalid) as created:
        await event_types.create(TENANT, replace(CREATED, name="rfp.larger", schema_json=too_many))
    with pytest.raises(Invalid) as updated:
        await event_types.update(
            TENANT, entry.id, expected_version=None, paths=["schema"], changes_for=changes({"schema": too_many})
        )

    expected = [("event_type.schema", f"holds {SCHEMA_MAX_PATTERNS + 1} regexes ")]
    for raised in (created, updated):
        found = [(v.field, v.description[: len(expected[0][1])]) for v in raised.value.violations]
        assert found == expected
        assert f"the limit is {SCHEMA_MAX_PATTERNS}" in raised.value.violations[0].description


async def test_entries_are_checked_off_the_event_loop(event_types: EventTypes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking a schema and its example (the meta-schema, the probes, the example's validation) is CPU
    work, seconds for a large schema: every other call on the loop waited for it."""
    loop_ran = threading.Event()

    def check_once_the_loop_runs(spec: EventTypeSpec) -> EventTypeSpec:
        assert loop_ran.wait(10), "the event loop did not run while the entry was checked"
        loop_ran.clear()
        return validate_event_type_spec(spec)

    async def meanwhile() -> None:
        loop_ran.set()

    monkeypatch.setattr(event_types_service, "validate_event_type_spec", check_once_the_loop_runs)
    created, _ = await asyncio.gather(event_types.create(TENANT, CREATED), meanwhile())
    updated, _ = await asyncio.gather(
        event_types.update(
            TENANT, created.id, expected_version=1, paths=["example"], changes_for=changes({"example": "[1]"})
        ),
        meanwhile(),
        return_exceptions=True,
    )

    assert created.spec.description == "An RFP was created."
    assert isinstance(updated, Invalid)  # the same errors as before, from the thread
    assert [v.field for v in updated.violations] == ["event_type.example"]


async def test_other_scopes_see_no_entry(event_types: EventTypes) -> None:
    entry = await event_types.create(TENANT, CREATED)

    with pytest.raises(NotFound):
        await event_types.get(OTHER_TENANT, entry.id)
    with pytest.raises(NotFound):
        await event_types.get(APP, entry.id)  # a person's entry is the tenant's, not the app's
    assert (await event_types.get(TENANT, entry.id)) == entry


async def test_list_pages_in_creation_order_and_filters_by_prefix(event_types: EventTypes) -> None:
    for name in ("rfp.created", "rfp.closed", "order.created"):
        await event_types.create(TENANT, EventTypeSpec(name=name))

    first = await event_types.list_page(TENANT, name_prefix="rfp.", page_size=1, page_token="")
    second = await event_types.list_page(TENANT, name_prefix="rfp.", page_size=1, page_token=first.next_page_token)

    assert [entry.spec.name for entry in first.event_types + second.event_types] == ["rfp.created", "rfp.closed"]
    assert second.next_page_token == ""
    with pytest.raises(Invalid):
        await event_types.list_page(TENANT, name_prefix="order.", page_size=1, page_token=first.next_page_token)


async def test_update_changes_the_masked_fields_and_checks_the_version(
    event_types: EventTypes, clock: FakeClock
) -> None:
    entry = await event_types.create(TENANT, CREATED)
    clock.advance(timedelta(minutes=1))

    updated = await event_types.update(
        TENANT,
        entry.id,
        expected_version=1,
        paths=["deprecated", "schema"],
        changes_for=changes({"deprecated": True, "schema": None}),
    )

    assert updated.spec == replace(entry.spec, deprecated=True, schema_json=None)
    assert (updated.version, updated.updated_at) == (2, clock.now)
    with pytest.raises(Aborted):
        await event_types.update(
            TENANT, entry.id, expected_version=1, paths=["description"], changes_for=changes({"description": "x"})
        )


@pytest.mark.parametrize(
    ("path", "words"), [("name", "immutable"), ("id", "output only"), ("version", "precondition"), ("nope", "no such")]
)
async def test_a_mask_naming_what_cannot_change_is_refused(event_types: EventTypes, path: str, words: str) -> None:
    entry = await event_types.create(TENANT, CREATED)

    with pytest.raises(Invalid) as raised:
        await event_types.update(TENANT, entry.id, expected_version=None, paths=[path], changes_for=changes({}))

    assert words in raised.value.violations[0].description


async def test_a_star_mask_replaces_every_updatable_field_as_updatewebhook_does(event_types: EventTypes) -> None:
    """AIP-134's full replacement: `*` alone names every updatable field, so what the message leaves unset
    goes back to its default. UpdateWebhook took it; UpdateEventType refused it as "no such field"."""
    entry = await event_types.create(TENANT, CREATED)

    updated = await event_types.update(
        TENANT,
        entry.id,
        expected_version=None,
        paths=["*"],
        # What the API's changes give for a message with only a description: the rest at their defaults.
        changes_for=changes({"description": "only this", "schema": None, "example": None, "deprecated": False}),
    )

    assert updated.spec == replace(entry.spec, description="only this", schema_json=None, example_json=None)
    with pytest.raises(Invalid) as raised:
        await event_types.update(
            TENANT, entry.id, expected_version=None, paths=["*", "description"], changes_for=changes({})
        )
    assert (raised.value.violations[0].field, "alone" in raised.value.violations[0].description) == (
        "update_mask.paths[0]",
        True,
    )


async def test_an_update_cannot_leave_the_example_and_schema_disagreeing(event_types: EventTypes) -> None:
    entry = await event_types.create(TENANT, replace(CREATED, example_json='{"amount": 5}'))
    stricter = json.dumps({"properties": {"amount": {"maximum": 1}}})

    with pytest.raises(Invalid) as raised:
        await event_types.update(
            TENANT, entry.id, expected_version=None, paths=["schema"], changes_for=changes({"schema": stricter})
        )

    assert raised.value.violations[0].field == "event_type.example"


async def test_delete_removes_the_entry_for_good(event_types: EventTypes, notifications: FakeNotifications) -> None:
    entry = await event_types.create(TENANT, CREATED)

    with pytest.raises(Aborted):
        await event_types.delete(TENANT, entry.id, expected_version=7)
    assert (await event_types.delete(TENANT, entry.id, expected_version=1)).id == entry.id
    with pytest.raises(NotFound):
        await event_types.get(TENANT, entry.id)
    assert (await event_types.create(TENANT, CREATED)).spec.name == "rfp.created"  # the name is free again
    assert notifications.payloads(Topic.EVENT_TYPES) == ["rfp.created"] * 3


class CatalogAwaitingItsAnswer(FakeEventTypes):
    """Catalog writes that have reached the database and wait for their COMMIT's answer until
    `answered` is set: a cancelled call cannot take them back any more."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = asyncio.Event()
        self.answered = asyncio.Event()

    async def update(self, scope: Scope, event_type_id: str, spec: EventTypeSpec, **stamps: Any) -> EventType:
        written = await super().update(scope, event_type_id, spec, **stamps)
        self.sent.set()
        await self.answered.wait()
        return written


async def test_an_update_whose_caller_went_away_once_it_was_sent_is_told_to_every_process(
    webhook_store: FakeWebhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    """Else every process checks publishes against the schema it kept, until its entry ages out."""
    catalog = CatalogAwaitingItsAnswer()
    event_types = EventTypes(catalog, webhook_store, notifications, cache=EventSchemaCache(), clock=clock)
    entry = await event_types.create(TENANT, CREATED)
    assert await event_types.schema_for(TENANT, "rfp.created") is not None
    updating = asyncio.ensure_future(
        event_types.update(
            TENANT, entry.id, expected_version=1, paths=["schema"], changes_for=changes({"schema": None})
        )
    )
    await within(catalog.sent.wait())

    updating.cancel()
    catalog.answered.set()
    with pytest.raises(asyncio.CancelledError):
        await updating

    assert notifications.payloads(Topic.EVENT_TYPES) == ["rfp.created"] * 2
    assert await event_types.schema_for(TENANT, "rfp.created") is None


# -- the schema a publish is checked against -------------------------------------------------------------


async def test_a_schema_is_read_and_compiled_once_per_process(event_types: EventTypes, catalog: FakeEventTypes) -> None:
    await event_types.create(TENANT, CREATED)

    first = await event_types.schema_for(TENANT, "rfp.created")
    second = await event_types.schema_for(TENANT, "rfp.created")

    assert first is not None and first is second
    assert catalog.finds == 1


async def test_a_type_without_an_entry_or_schema_is_remembered_as_unchecked(
    event_types: EventTypes, catalog: FakeEventTypes
) -> None:
    await event_types.create(TENANT, EventTypeSpec(name="rfp.closed"))

    for _ in range(3):
        assert await event_types.schema_for(TENANT, "rfp.closed") is None
        assert await event_types.schema_for(TENANT, "rfp.opened") is None

    assert catalog.finds == 2


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"$ref": "#"}, "its $refs loop back"),
        ({"properties": {"amount": {"pattern": "("}}}, "the regular expression '(' does not compile"),
    ],
)
async def test_publishing_against_a_schema_stored_before_it_was_refused_is_a_failed_precondition(
    event_types: EventTypes,
    catalog: FakeEventTypes,
    webhook_store: FakeWebhooks,
    notifications: FakeNotifications,
    schema: dict[str, object],
    why: str,
) -> None:
    entry = await event_types.create(TENANT, CREATED)
    catalog.rows[entry.id] = replace(entry, spec=replace(entry.spec, schema_json=json.dumps(schema)))
    events = Events(FakeEvents(webhook_store, notifications), max_payload_bytes=4096, schemas=event_types)

    with pytest.raises(FailedPrecondition) as raised:
        await events.publish(
            TENANT, event_type="rfp.created", payload_json='{"amount": "1"}', idempotency_key=None, webhook_id=None
        )

    assert raised.value.reason == "EVENT_SCHEMA_UNEVALUABLE"
    assert raised.value.message.startswith(f"the schema of event type rfp.created cannot be applied: {why}")


async def test_a_publish_follows_the_entry_of_its_own_scope(event_types: EventTypes) -> None:
    await event_types.create(APP, CREATED)

    assert await event_types.schema_for(APP, "rfp.created") is not None
    assert await event_types.schema_for(TENANT, "rfp.created") is None  # the tenant's catalog has no entry


async def test_another_processs_write_makes_this_one_read_the_entry_again(
    event_types: EventTypes, catalog: FakeEventTypes, cache: EventSchemaCache
) -> None:
    assert await event_types.schema_for(TENANT, "rfp.created") is None
    # Another process adds the entry: only its notification reaches this one.
    other_process = EventTypes(catalog, FakeWebhooks(), FakeNotifications())
    await other_process.create(TENANT, CREATED)
    assert await event_types.schema_for(TENANT, "rfp.created") is None  # still what this process kept

    cache.changed("rfp.created")

    assert await event_types.schema_for(TENANT, "rfp.created") is not None


async def test_changes_are_followed_while_the_block_runs(
    event_types: EventTypes, catalog: FakeEventTypes, notifications: FakeNotifications
) -> None:
    async with event_types.follow_changes():
        assert await event_types.schema_for(TENANT, "rfp.created") is None
        await EventTypes(catalog, FakeWebhooks(), notifications).create(TENANT, CREATED)

        assert await event_types.schema_for(TENANT, "rfp.created") is not None


def test_a_read_that_overlapped_a_change_is_not_kept() -> None:
    cache = EventSchemaCache()
    key = ("tnt_a", "", "rfp.created")
    read_at = cache.generation

    cache.changed("rfp.created")  # the entry is written while the read is on its way
    cache.put(key, None, read_at_generation=read_at)

    assert cache.get(key) == (False, None)


def test_kept_schemas_age_out_and_a_reconnect_forgets_them_all() -> None:
    now = [0.0]
    cache = EventSchemaCache(ttl_seconds=10, clock=lambda: now[0])
    cache.put(("t", "", "a.b"), None, read_at_generation=0)
    cache.put(("t", "", "c.d"), None, read_at_generation=0)

    now[0] = 9.9
    assert cache.get(("t", "", "a.b")) == (True, None)
    now[0] = 10.0
    assert cache.get(("t", "", "a.b")) == (False, None)
    cache.changed(None)
    assert len(cache) == 0


# -- test events -----------------------------------------------------------------------------------------


async def test_a_test_event_carries_the_catalogs_example_and_a_stand_in_without_one(
    event_types: EventTypes,
    webhooks: Webhooks,
    webhook_store: FakeWebhooks,
    secret_store: FakeSecrets,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> None:
    await event_types.create(TENANT, replace(CREATED, example_json='{"amount": 12.50}'))
    webhook, _, _ = await webhooks.create(TENANT, WebhookSpec(name="w", url="https://receiver.example/hooks"), None)
    sender = FakeSender()
    pings = Pings(
        webhook_store,
        SigningSecrets(secret_store),
        sender,
        FakePingRecords(),
        notifications,
        buckets=FakePingBuckets(clock),
        examples=event_types,
        clock=clock,
    )

    await pings.send(TENANT, webhook.id, event_type="rfp.created")
    await pings.send(TENANT, webhook.id, event_type="rfp.closed")

    with_example, without = (request.body for request in sender.requests)
    assert with_example.endswith(b',"data":{"amount": 12.50}}')  # as written in the catalog
    assert json.loads(without)["data"]["test"] is True
