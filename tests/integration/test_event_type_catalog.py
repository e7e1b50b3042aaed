"""The event type catalog end to end: its RPCs over gRPC and REST, and PublishEvent checked against it,
in every process of the service."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cpod.integration.v1 import event_type_pb2 as epb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2, struct_pb2
from rest_calls import EVENTS, RestCaller, error_of, reason_of, rest_caller, violated_fields
from webhook_calls import create_webhook, error_info, field_violations, rpc_error

from support import running_service

EVENT_TYPES = "/api/v1/integration/event-types"
SCHEMA = {
    "type": "object",
    "properties": {"rfp_id": {"type": "integer"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["rfp_id"],
}


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


def entry(name: str = "rfp.created", **fields) -> epb.EventType:
    return epb.EventType(name=name, schema_json=json.dumps(SCHEMA), **fields)


def payload(**values) -> struct_pb2.Struct:
    data = struct_pb2.Struct()
    data.update(values)
    return data


async def queued(database, tenant_id: str) -> int:
    return int(await database.value("SELECT count(*) FROM deliveries WHERE tenant_id = :t", t=tenant_id))


# -- publish against the catalog -------------------------------------------------------------------------


async def test_a_valid_payload_is_queued_and_an_invalid_one_refused_naming_its_pointer(caller, database) -> None:
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry()))

    valid = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(rfp_id=7)))
    error = await rpc_error(
        caller.PublishEvent(
            pb.PublishEventRequest(event_type="rfp.created", payload_json='{"rfp_id": 8, "amount": -5}')
        )
    )

    assert valid.deliveries_queued == 1
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"payload": "/amount: -5 is less than the minimum of 0"}
    assert error_info(error).reason == "PAYLOAD_SCHEMA_MISMATCH"
    assert await queued(database, caller.tenant_id) == 1  # the refused event queued nothing
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 1


async def test_types_without_a_catalog_entry_publish_as_before(caller) -> None:
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["*"])
    await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry()))

    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.closed", payload=payload(x="y")))

    assert published.deliveries_queued == 1


async def test_over_rest_the_payload_is_checked_as_sent(rest, database) -> None:
    created = await rest.post(EVENT_TYPES, json={"name": "order.paid", "schema": SCHEMA})
    assert created.status_code == 200, created.text

    refused = await rest.post(EVENTS, json={"event_type": "order.paid", "payload": {"rfp_id": 1.5}})

    assert refused.status_code == 400
    assert error_of(refused)["status"] == "INVALID_ARGUMENT"
    assert reason_of(refused) == "PAYLOAD_SCHEMA_MISMATCH"
    assert violated_fields(refused) == {"payload"}
    assert "/rfp_id: 1.5 is not of type 'integer'" in error_of(refused)["message"]


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$refs loop back"),
        ({"properties": {"s": {"pattern": "("}}}, "/properties/s/pattern: '(' is not a regular expression"),
        # regex unrolls counted repeats: a million copies of `a`, 276 MB to compile (more digits: all memory).
        ({"properties": {"s": {"pattern": "(a{1000}){1000}"}}}, "its counted repeats unroll to more than 1000"),
    ],
)
async def test_a_schema_no_payload_could_be_checked_against_is_refused_on_create(caller, schema, words) -> None:
    """Before, these were stored, and every publish (or this create, given an example) was INTERNAL."""
    for example in ("", '{"s": "x"}'):
        error = await rpc_error(
            caller.CreateEventType(
                epb.CreateEventTypeRequest(
                    event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema), example_json=example)
                )
            )
        )

        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert words in field_violations(error)["event_type.schema"]


async def test_a_schema_stored_before_it_was_refused_fails_publishes_as_a_precondition(rest, database) -> None:
    created = await rest.post(EVENT_TYPES, json={"name": "order.paid", "schema": SCHEMA})
    assert created.status_code == 200, created.text
    # As a row written before such schemas were refused reads (nothing published yet: nothing cached).
    await database.execute(
        "UPDATE event_types SET schema_json = :s WHERE id = :id", s='{"$ref": "#"}', id=created.json()["id"]
    )

    refused = await rest.post(EVENTS, json={"event_type": "order.paid", "payload": {"rfp_id": 1}})

    assert refused.status_code == 400, refused.text
    assert error_of(refused)["status"] == "FAILED_PRECONDITION"
    assert reason_of(refused) == "EVENT_SCHEMA_UNEVALUABLE"
    assert "the schema of event type order.paid cannot be applied" in error_of(refused)["message"]


async def test_a_catastrophic_pattern_fails_its_publish_within_the_budget_not_the_process(caller) -> None:
    """Before, `^(a|a)*$` on this string held the server's one event loop (and the GIL) for seconds."""
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|a)*$"}}}
    await caller.CreateEventType(
        epb.CreateEventTypeRequest(event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema)))
    )

    matching = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(s="aaaa")))
    error = await rpc_error(
        caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(s="a" * 26 + "!")))
    )

    assert matching.event_id
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "EVENT_SCHEMA_UNEVALUABLE"
    assert "matching '^(a|a)*$' ran out of the regex budget" in error.details()


async def test_alternatives_that_each_descend_fail_a_deep_publish_within_the_budget_not_the_process(caller) -> None:
    """Before, two anyOf branches over 18 levels of arrays held the server's event loop for 90 s."""
    branch = {"type": "array", "items": {"$ref": "#/$defs/nested"}}
    schema = {"$defs": {"nested": {"anyOf": [branch, branch]}}, "properties": {"n": {"$ref": "#/$defs/nested"}}}
    await caller.CreateEventType(
        epb.CreateEventTypeRequest(event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema)))
    )

    def nested(depth: int, innermost: list[object]) -> list[object]:
        for _ in range(depth):
            innermost = [innermost]
        return innermost

    def publish(value: list[object]) -> object:
        return caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(n=value)))

    matching = await publish(nested(40, []))  # the first branch matches at every level: no blow-up
    error = await rpc_error(publish(nested(12, ["x"])))  # both fail only at the innermost value

    assert matching.event_id
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "EVENT_SCHEMA_TOO_COSTLY"
    assert "the schema of event type rfp.created is too costly to check this payload against" in error.details()


# Ninety alternatives that fail before the one that matches, on every item.
NINETY_FAILING_BRANCHES = {"items": {"anyOf": [{"type": "string"}] * 90 + [{"type": "integer"}]}}


async def test_an_example_too_costly_to_check_is_refused_naming_the_limit(caller) -> None:
    """Before, 21,000 integers (a 63 KB example) held CreateEventType for 17 s."""
    schema = {"properties": {"n": NINETY_FAILING_BRANCHES}}
    example = json.dumps({"n": list(range(5_000))})

    error = await rpc_error(
        caller.CreateEventType(
            epb.CreateEventTypeRequest(
                event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema), example_json=example)
            )
        )
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "steps" in field_violations(error)["event_type.example"]


async def test_a_payload_too_costly_to_check_fails_its_publish_as_a_precondition(caller) -> None:
    """Before, a 256 KiB payload of integers held a worker thread, and the GIL, for about a minute."""
    schema = {"properties": {"n": NINETY_FAILING_BRANCHES}}
    await caller.CreateEventType(
        epb.CreateEventTypeRequest(event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema)))
    )

    def publish(count: int) -> object:
        payload_json = json.dumps({"n": list(range(count))})
        return caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=payload_json))

    matching = await publish(20)
    error = await rpc_error(publish(5_000))

    assert matching.event_id
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "EVENT_SCHEMA_TOO_COSTLY"
    assert "simplify the schema" in error.details()


# A subschema may name the dialect it is written in; jsonschema then picked its stock 2020-12 validator for
# everything below it: no step meter, no regex budget, `re` instead of `regex`.
NAMED_DIALECT = {"$schema": "https://json-schema.org/draft/2020-12/schema"}


async def create_schema(caller, schema: dict[str, object]) -> None:
    await caller.CreateEventType(
        epb.CreateEventTypeRequest(event_type=epb.EventType(name="rfp.created", schema_json=json.dumps(schema)))
    )


async def test_a_subschema_naming_the_dialect_is_metered_on_publish_like_the_rest(caller) -> None:
    """Before, its catastrophic pattern held the GIL for seconds (re) and its descending alternatives
    were exponential again, each ending in a plain mismatch instead of the metered outcome."""
    branch = {"type": "array", "items": {"$ref": "#/$defs/nested"}}
    await create_schema(
        caller,
        {
            "$defs": {"nested": {**NAMED_DIALECT, "anyOf": [branch, branch]}},
            "properties": {
                "s": {**NAMED_DIALECT, "type": "string", "pattern": "^(a|a)*$"},
                "n": {"$ref": "#/$defs/nested"},
            },
        },
    )

    def publish(**values: object) -> object:
        return caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(**values)))

    matching = await publish(s="aaaa", n=[[[]]])
    catastrophic = await rpc_error(publish(s="a" * 26 + "!"))
    deep = await rpc_error(publish(n=[[[[[[[[[[[["x"]]]]]]]]]]]]))  # both branches fail only at the innermost

    assert matching.event_id
    assert catastrophic.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(catastrophic).reason == "EVENT_SCHEMA_UNEVALUABLE"
    assert "matching '^(a|a)*$' ran out of the regex budget" in catastrophic.details()
    assert deep.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(deep).reason == "EVENT_SCHEMA_TOO_COSTLY"


async def test_a_subschema_naming_the_dialect_accepts_and_refuses_payloads_as_written(caller, database) -> None:
    """Its pattern reads ECMA-262's `\\p{Lu}` as the rest of the schema does (`re`, which the stock validator
    used, has no `\\p`), and its other keywords refuse what they should, naming the pointer."""
    await create_schema(
        caller,
        {
            "type": "object",
            "properties": {
                "code": {**NAMED_DIALECT, "type": "string", "pattern": "^\\p{Lu}{3}$"},
                "amount": {**NAMED_DIALECT, "type": "number", "minimum": 0},
            },
        },
    )

    def publish(**values: object) -> object:
        return caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload(**values)))

    valid = await publish(code="ÉTÉ", amount=5)
    lower = await rpc_error(publish(code="abc"))
    negative = await rpc_error(publish(code="ABC", amount=-5))

    assert valid.event_id
    assert lower.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(lower) == {"payload": "/code: 'abc' does not match '^\\\\p{Lu}{3}$'"}
    assert negative.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(negative).reason == "PAYLOAD_SCHEMA_MISMATCH"
    assert field_violations(negative) == {"payload": "/amount: -5 is less than the minimum of 0"}
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 1


async def test_a_catalog_change_reaches_every_process_at_once(caller, settings, backends, database) -> None:
    """The session service publishes; another service on the same database changes the catalog."""
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    request = pb.PublishEventRequest(event_type="rfp.created", payload=payload(amount=-1))
    assert (await caller.PublishEvent(request)).deliveries_queued == 1  # no entry: unchecked, remembered

    async with running_service(settings, backends) as other_caller:
        other_caller.metadata = caller.metadata  # the same tenant, through the other process
        created = await other_caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry()))

        async def refused() -> bool:
            try:
                await caller.PublishEvent(request)
            except grpc.aio.AioRpcError as error:
                return error.code() is grpc.StatusCode.INVALID_ARGUMENT
            return False

        await until_true(refused)
        mask = field_mask_pb2.FieldMask(paths=["schema"])
        await other_caller.UpdateEventType(
            epb.UpdateEventTypeRequest(event_type=epb.EventType(id=created.event_type.id), update_mask=mask)
        )

        async def accepted() -> bool:
            try:
                await caller.PublishEvent(request)
            except grpc.aio.AioRpcError:
                return False
            return True

        await until_true(accepted)


async def until_true(check, within: float = 10.0) -> None:
    """Calls `check` until it says True (bounded): a notification travels between processes."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the change did not reach the other process"
        await asyncio.sleep(0.02)


# -- the catalog's RPCs ----------------------------------------------------------------------------------


async def test_grpc_create_get_list_update_delete(caller) -> None:
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry(description="new")))).event_type
    assert created.id.startswith("etp_") and created.version == 1 and created.created_by == "person_1"
    assert json.loads(created.schema_json) == SCHEMA and created.schema["required"] == ["rfp_id"]

    got = (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type
    listed = (await caller.ListEventTypes(epb.ListEventTypesRequest(name_prefix="rfp."))).event_types
    updated = (
        await caller.UpdateEventType(
            epb.UpdateEventTypeRequest(
                event_type=epb.EventType(id=created.id, deprecated=True, version=1),
                update_mask=field_mask_pb2.FieldMask(paths=["deprecated"]),
            )
        )
    ).event_type
    stale = await rpc_error(
        caller.UpdateEventType(epb.UpdateEventTypeRequest(event_type=epb.EventType(id=created.id, version=1)))
    )
    deleted = (await caller.DeleteEventType(epb.DeleteEventTypeRequest(id=created.id))).event_type
    gone = await rpc_error(caller.GetEventType(epb.GetEventTypeRequest(id=created.id)))

    assert got == created and list(listed) == [created]
    assert (updated.deprecated, updated.version, updated.schema_json) == (True, 2, created.schema_json)
    assert stale.code() is grpc.StatusCode.INVALID_ARGUMENT  # nothing to update: no mask, no field set
    assert deleted.id == created.id and gone.code() is grpc.StatusCode.NOT_FOUND


async def test_grpc_update_with_a_star_mask_replaces_the_whole_entry(caller) -> None:
    """`*` is AIP-134's full replacement, as UpdateWebhook takes it: the fields the message leaves unset
    go back to their defaults (here the schema and example are cleared)."""
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry(description="old")))).event_type
    replaced = (
        await caller.UpdateEventType(
            epb.UpdateEventTypeRequest(
                event_type=epb.EventType(id=created.id, description="whole"),
                update_mask=field_mask_pb2.FieldMask(paths=["*"]),
            )
        )
    ).event_type

    assert (replaced.description, replaced.schema_json, replaced.example_json, replaced.version) == ("whole", "", "", 2)


async def test_grpc_a_negative_version_is_invalid_not_a_version_mismatch(caller) -> None:
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry()))).event_type
    updating = await rpc_error(
        caller.UpdateEventType(
            epb.UpdateEventTypeRequest(
                event_type=epb.EventType(id=created.id, version=-1, deprecated=True),
                update_mask=field_mask_pb2.FieldMask(paths=["deprecated"]),
            )
        )
    )
    deleting = await rpc_error(caller.DeleteEventType(epb.DeleteEventTypeRequest(id=created.id, version=-1)))

    assert (updating.code(), deleting.code()) == (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT)
    got = (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type
    assert (got.deprecated, got.version) == (False, 1)


def nested(levels: int) -> str:
    """A JSON object `levels` deep: {"a": {"a": ... {}}}."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


async def test_schemas_and_examples_nested_deeper_than_a_struct_carries_are_refused_on_create_and_update(
    caller,
) -> None:
    """Both go out as Structs too, which no client decodes past about 33 levels: such an entry was stored,
    and every Get or List of it then failed as INTERNAL."""
    deepest = epb.EventType(name="rfp.deep", schema_json=f'{{"default": {nested(31)}}}', example_json=nested(32))
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=deepest))).event_type
    got = (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type
    listed = (await caller.ListEventTypes(epb.ListEventTypesRequest(name_prefix="rfp.deep"))).event_types
    assert got == created and list(listed) == [created]

    for levels in (33, 10_000):
        too_deep = epb.EventType(
            name="rfp.deeper", schema_json=f'{{"default": {nested(levels - 1)}}}', example_json=nested(levels)
        )
        refused = await rpc_error(caller.CreateEventType(epb.CreateEventTypeRequest(event_type=too_deep)))
        schema_only = epb.EventType(id=created.id, schema_json=too_deep.schema_json)
        mask = field_mask_pb2.FieldMask(paths=["schema"])
        not_updated = await rpc_error(
            caller.UpdateEventType(epb.UpdateEventTypeRequest(event_type=schema_only, update_mask=mask))
        )

        assert refused.code() is not_updated.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "nests deeper than" in field_violations(refused)["event_type.schema.default"]
        assert "nests deeper than" in field_violations(refused)["event_type.example.a"]
        assert "nests deeper than" in field_violations(not_updated)["event_type.schema.default"]
    assert (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type == created


async def test_an_entry_stored_deeper_than_a_struct_carries_is_read_back_as_json_text_only(caller, database) -> None:
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry("rfp.stored")))).event_type
    # As a row written before such entries were refused reads.
    deep = nested(60)
    await database.execute("UPDATE event_types SET example_json = :e WHERE id = :id", e=deep, id=created.id)

    got = (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type
    listed = (await caller.ListEventTypes(epb.ListEventTypesRequest(name_prefix="rfp.stored"))).event_types

    assert got.example_json == deep and not got.HasField("example")
    assert got.schema == created.schema  # the other field still goes out as a Struct
    assert list(listed) == [got]


async def test_a_schema_or_example_holding_a_lone_surrogate_is_refused_and_the_catalog_still_lists(rest) -> None:
    """JSON may spell `\\ud800`, which no UTF-8 text holds: as a Struct the reply failed (500), the entry
    was stored all the same, and every List of the catalog failed after it."""
    body = (
        '{"name": "rfp.surrogate", "schema": {"type": "object", "description": "\\udfff"},'
        ' "example": {"a": ["\\ud800"], "\\udbff": 1}}'
    )
    refused = await rest.post(EVENT_TYPES, content=body, headers={"Content-Type": "application/json"})
    listed = await rest.get(EVENT_TYPES)

    assert refused.status_code == 400, refused.text
    assert violated_fields(refused) == {
        "event_type.schema.description",
        "event_type.example.a[0]",
        "event_type.example",
    }
    assert listed.status_code == 200 and listed.json()["event_types"] == []


async def test_an_entry_stored_with_a_lone_surrogate_is_read_back_as_json_text_only(caller, database) -> None:
    created = (await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry("rfp.stored2")))).event_type
    # As a row written before such entries were refused reads.
    example = '{"a": "\\ud800"}'
    await database.execute("UPDATE event_types SET example_json = :e WHERE id = :id", e=example, id=created.id)

    got = (await caller.GetEventType(epb.GetEventTypeRequest(id=created.id))).event_type
    listed = (await caller.ListEventTypes(epb.ListEventTypesRequest(name_prefix="rfp.stored2"))).event_types

    assert got.example_json == example and not got.HasField("example")
    assert got.schema == created.schema
    assert list(listed) == [got]


async def test_a_name_is_held_once_and_bad_entries_are_refused_field_by_field(caller) -> None:
    await caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry()))

    again = await rpc_error(caller.CreateEventType(epb.CreateEventTypeRequest(event_type=entry())))
    bad = await rpc_error(
        caller.CreateEventType(
            epb.CreateEventTypeRequest(
                event_type=epb.EventType(
                    name="rfp.closed", schema_json='{"type": "objekt"}', example_json='{"rfp_id": "x"}'
                )
            )
        )
    )
    mismatched = await rpc_error(
        caller.CreateEventType(
            epb.CreateEventTypeRequest(event_type=entry("rfp.updated", example_json='{"rfp_id": "seven"}'))
        )
    )

    assert again.code() is grpc.StatusCode.ALREADY_EXISTS
    assert set(field_violations(bad)) == {"event_type.schema"}
    assert field_violations(mismatched) == {
        "event_type.example": "does not match the schema: /rfp_id: 'seven' is not of type 'integer'"
    }


async def test_rest_round_trip_keeps_the_schema_as_written_and_honours_etags(rest) -> None:
    schema = {"type": "object", "properties": {"id": {"const": 9007199254740993}}}
    created = await rest.post(
        EVENT_TYPES, json={"name": "ledger.posted", "schema": schema, "example": {"id": 9007199254740993}}
    )
    assert created.status_code == 200, created.text
    body = created.json()
    url = f"{EVENT_TYPES}/{body['id']}"

    got = await rest.get(url)
    patched = await rest.patch(url, json={"description": "A posting."}, headers={"If-Match": got.headers["ETag"]})
    stale = await rest.patch(url, json={"description": "x"}, headers={"If-Match": got.headers["ETag"]})
    listed = (await rest.get(EVENT_TYPES)).json()
    deleted = await rest.delete(url)

    assert body["schema"] == schema and body["example"] == {"id": 9007199254740993}
    assert "schema_json" not in body and got.headers["ETag"] == '"1"'
    assert patched.status_code == 200 and patched.json()["description"] == "A posting."
    assert stale.status_code == 412
    assert [item["id"] for item in listed["event_types"]] == [body["id"]]
    assert deleted.status_code == 200 and (await rest.get(url)).status_code == 404
