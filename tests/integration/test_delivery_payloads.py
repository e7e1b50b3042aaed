"""What a receiver gets as `data`: the publisher's JSON exactly as sent, over REST (`payload`) and gRPC
(`payload_json`), numbers past 2^53 and decimals included; and the payloads JSON cannot carry
(NaN, Infinity, 1e400, nesting 100,000 deep) refused as INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from rest_calls import EVENTS, RestCaller, error_of, rest_caller, violated_fields
from rest_calls import create as create_over_rest
from webhook_calls import create_webhook, field_violations, rpc_error

# Both lose their value through a double: 9007199254740993 reads as ...992, and 0.1 is not 0.1.
EXACT_PAYLOAD = '{"snowflake": 9007199254740993, "amount": 0.1, "scale": 1.10, "tiny": 1E-7, "nested": {"n": [-0]}}'


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


def data_text(body: bytes) -> bytes:
    """The bytes after `"data":` in a delivered Standard Webhooks envelope (its last member)."""
    head, marker, data = body.partition(b',"data":')
    assert marker and data.endswith(b"}"), body
    assert json.loads(head + b"}").keys() == {"type", "timestamp"}
    return data[:-1]


async def test_a_rest_payload_reaches_the_receiver_byte_for_byte(rest, workers, receiver) -> None:
    await create_over_rest(rest, url=receiver.url, event_types=["rfp.*"])
    body = '{"event_type": "rfp.created", "payload": ' + EXACT_PAYLOAD + "}"

    published = await rest.post(EVENTS, content=body.encode(), headers={"Content-Type": "application/json"})

    assert published.status_code == 200, published.text
    [delivered] = await receiver.wait_for(1)
    assert data_text(delivered.body) == EXACT_PAYLOAD.encode()


async def test_a_grpc_payload_json_reaches_the_receiver_byte_for_byte(caller, workers, receiver) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])

    await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=EXACT_PAYLOAD))

    [delivered] = await receiver.wait_for(1)
    assert data_text(delivered.body) == EXACT_PAYLOAD.encode()


async def test_a_grpc_struct_payload_still_arrives_with_integral_numbers_as_integers(caller, workers, receiver) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    payload = struct_pb2.Struct()
    payload.update({"rfp_id": 7})

    await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload))

    [delivered] = await receiver.wait_for(1)
    assert data_text(delivered.body) == b'{"rfp_id":7}'


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
async def test_a_struct_holding_a_non_finite_number_is_invalid_argument(caller, database, number) -> None:
    payload = struct_pb2.Struct()
    payload.update({"order": {"total": number}})

    error = await rpc_error(caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload)))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["payload.order.total"]
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"payload_json": '{"a": '}, "payload_json"),
        ({"payload_json": "[1]"}, "payload_json"),
        ({"payload_json": '{"a": NaN}'}, "payload_json.a"),
        ({"payload_json": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "payload_json.a"),
        ({"payload_json": "{}", "payload": struct_pb2.Struct()}, "payload_json"),
        # A schema would check one value and a receiver might read the other.
        ({"payload_json": '{"order": {"amount": -5, "amount": 5}}'}, "payload_json.order"),
    ],
    ids=["not-json", "not-an-object", "nan", "nested-100000", "both", "repeated-key"],
)
async def test_a_bad_payload_json_is_invalid_argument_naming_the_field(caller, database, fields, field) -> None:
    error = await rpc_error(caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", **fields)))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [field]
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"total": NaN}', "payload.total"),
        ('{"total": Infinity}', "payload.total"),
        ('{"total": -Infinity}', "payload.total"),
        ('{"total": 1e400}', "payload.total"),
        ('{"lines": ' + "[" * 100_000 + "]" * 100_000 + "}", "payload"),
        ('{"amount": -5, "amount": 5}', "payload"),
    ],
    ids=["nan", "infinity", "minus-infinity", "1e400", "nested-100000", "repeated-key"],
)
async def test_a_rest_payload_json_cannot_carry_is_400_naming_the_field(rest, database, payload, field) -> None:
    body = '{"event_type": "rfp.created", "payload": ' + payload + "}"

    response = await rest.post(EVENTS, content=body.encode(), headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert violated_fields(response) == {field}
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=rest.tenant_id) == 0
