"""How any message maps to the gateway's JSON and back (webhookd.gateway.jsonshape), with no server:
the seed's field names, lowercase enum words, camelCase retry_policy, numbers and nulls, and input
that takes either spelling but no unknown field.

What the real service puts in those fields, read over REST, is tests/integration/test_gateway_webhook_values.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from cpod.integration.v1 import webhook_pb2, webhook_service_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from playground_seed import ADDED_FIELDS, seed_schema
from webhookd.gateway.jsonshape import JsonInputError, enum_number, enum_word, json_to_message, message_to_json


def full_webhook() -> webhook_pb2.Webhook:
    return webhook_pb2.Webhook(
        id="whk_01",
        name="orders",
        direction=webhook_pb2.DIRECTION_OUTBOUND,
        source_type=webhook_pb2.SOURCE_TYPE_API,
        created_at=timestamp_pb2.Timestamp(seconds=1714557600),
        retry_policy=webhook_pb2.RetryPolicy(max_attempts=8, backoff="exponential", timeout_ms=15000),
        headers={"X-Team": "billing"},
        event_types=["rfp.created"],
        enabled=True,
        version=3,
    )


def test_resource_has_exactly_the_seed_field_names_in_its_order() -> None:
    assert list(message_to_json(webhook_pb2.Webhook())) == [field.name for field in seed_schema()] + list(ADDED_FIELDS)


def test_retry_policy_fields_are_camel_case_as_the_seed_shows() -> None:
    assert message_to_json(full_webhook())["retry_policy"] == {
        "maxAttempts": 8,
        "backoff": "exponential",
        "timeoutMs": 15000,
    }


def test_enums_are_lowercase_words_without_the_type_prefix() -> None:
    data = message_to_json(full_webhook())
    assert (data["direction"], data["source_type"]) == ("outbound", "api")


def test_unspecified_enum_and_unset_messages_are_null() -> None:
    data = message_to_json(webhook_pb2.Webhook())
    assert data["direction"] is None and data["source_type"] is None
    assert data["deleted_at"] is None and data["retry_policy"] is None and data["enabled"] is None


def test_an_output_only_string_the_server_left_empty_is_null_as_the_seed_says() -> None:
    # The seed: deleted_by "null otherwise", app_id "absent for human-user sessions".
    data = message_to_json(full_webhook())
    assert [data[key] for key in ("app_id", "deleted_by", "created_by", "last_delivery_status")] == [None] * 4
    assert data["credential_header"] is None
    stamped = message_to_json(webhook_pb2.Webhook(app_id="app_1", deleted_by="p1", last_delivery_status="succeeded"))
    assert (stamped["app_id"], stamped["deleted_by"], stamped["last_delivery_status"]) == ("app_1", "p1", "succeeded")
    # What the caller writes keeps its empty string: the caller sent (or cleared) it.
    assert data["url"] == "" and data["connector_id"] == ""


def test_scalars_repeated_maps_and_timestamps() -> None:
    data = message_to_json(full_webhook())
    assert data["version"] == 3  # a number, as the seed types it, not proto3-JSON's "3"
    assert data["created_at"] == "2024-05-01T10:00:00Z"
    assert data["headers"] == {"X-Team": "billing"}
    assert data["event_types"] == ["rfp.created"]
    assert data["enabled"] is True
    assert data["tags"] == [] and data["url"] == ""


def test_responses_nest_the_same_shape() -> None:
    data = message_to_json(webhook_service_pb2.ListWebhooksResponse(webhooks=[full_webhook()], next_page_token="t"))
    assert list(data) == ["webhooks", "next_page_token"]
    assert data["webhooks"][0]["direction"] == "outbound"


def test_output_parses_back_to_the_same_message() -> None:
    original = full_webhook()
    parsed = webhook_pb2.Webhook()
    json_to_message(message_to_json(original), parsed)
    assert parsed == original


@pytest.mark.parametrize(
    "body",
    [
        {"event_types": ["a.b"], "retry_policy": {"max_attempts": 2, "timeout_ms": 100}, "source_type": "backend"},
        {"eventTypes": ["a.b"], "retryPolicy": {"maxAttempts": 2, "timeoutMs": 100}, "sourceType": "BACKEND"},
        {
            "event_types": ["a.b"],
            "retryPolicy": {"maxAttempts": 2, "timeout_ms": 100},
            "source_type": "SOURCE_TYPE_BACKEND",
        },
    ],
)
def test_input_accepts_either_spelling_and_any_enum_form(body: dict[str, Any]) -> None:
    parsed = webhook_pb2.Webhook()
    json_to_message(body, parsed)
    assert list(parsed.event_types) == ["a.b"]
    assert (parsed.retry_policy.max_attempts, parsed.retry_policy.timeout_ms) == (2, 100)
    assert parsed.source_type == webhook_pb2.SOURCE_TYPE_BACKEND


def test_null_enum_input_is_unspecified() -> None:
    parsed = webhook_pb2.Webhook()
    json_to_message({"direction": None}, parsed)
    assert parsed.direction == webhook_pb2.DIRECTION_UNSPECIFIED


def errors_of(body: Any) -> dict[str, str]:
    with pytest.raises(JsonInputError) as caught:
        json_to_message(body, webhook_pb2.Webhook(), path="webhook")
    return {v.field: v.description for v in caught.value.violations}


def test_unknown_fields_are_reported_with_their_path() -> None:
    assert errors_of({"name": "x", "secret": "s", "retry_policy": {"attempts": 1}}) == {
        "webhook.secret": "unknown field 'secret' in Webhook",
        "webhook.retry_policy.attempts": "unknown field 'attempts' in RetryPolicy",
    }


def test_bad_enum_word_lists_the_words() -> None:
    assert errors_of({"direction": "sideways"}) == {"webhook.direction": "'sideways' is not one of: outbound, inbound"}


def test_both_spellings_at_once_is_an_error() -> None:
    assert list(errors_of({"event_types": [], "eventTypes": []})) == ["webhook.eventTypes"]


def test_an_unknown_top_level_field_is_named_without_a_prefix() -> None:
    request = webhook_service_pb2.CreateWebhookRequest()
    with pytest.raises(JsonInputError) as caught:
        json_to_message({"webhook": {"name": "x"}, "extra": 1}, request)
    assert [violation.field for violation in caught.value.violations] == ["extra"]


def test_wrong_shapes_are_reported() -> None:
    assert errors_of([1]) == {"webhook": "expected a JSON object for Webhook"}
    assert errors_of({"tags": "a"}) == {"webhook.tags": "expected a JSON array"}
    assert list(errors_of({"name": 5})) == ["webhook.name"]


def test_every_wrongly_typed_value_is_named_by_its_own_path_in_plain_words() -> None:
    assert errors_of(
        {
            "name": 5,
            "enabled": "yes",
            "version": True,
            "event_types": ["a", 1],
            "headers": {"X-Team": None},
            "retry_policy": {"maxAttempts": "x", "timeoutMs": 1.5},
        }
    ) == {
        "webhook.name": "expected a string, not a number",
        "webhook.enabled": "expected true or false, not a string",
        "webhook.version": "expected an integer, not a boolean",
        "webhook.event_types[1]": "expected a string, not a number",
        "webhook.headers.X-Team": "expected a string, not null",
        "webhook.retry_policy.max_attempts": "expected an integer, not a string",
        "webhook.retry_policy.timeout_ms": "expected an integer, not a number with a fraction",
    }


@pytest.mark.parametrize("body", [{"version": "7"}, {"version": 7.0}, {"rate_limit_per_second": "5"}])
def test_integers_take_the_forms_proto3_json_allows(body: dict[str, Any]) -> None:
    json_to_message(body, webhook_pb2.Webhook())


def test_a_value_past_its_type_names_the_field_and_no_message_type() -> None:
    [(field, description)] = errors_of({"version": 2**70}).items()
    assert field == "webhook.version" and "Webhook" not in description
    [(field, description)] = errors_of({"created_at": "yesterday"}).items()
    assert field == "webhook.created_at" and "Webhook" not in description


def test_enum_word_helpers() -> None:
    enum = webhook_pb2.SourceType.DESCRIPTOR
    assert enum_word(enum, webhook_pb2.SOURCE_TYPE_FRONTEND) == "frontend"
    assert enum_word(enum, 0) is None
    assert enum_number(enum, "Frontend") == webhook_pb2.SOURCE_TYPE_FRONTEND
    assert enum_number(enum, "nope") is None


def _kinds_message() -> Any:
    """A message type with the field kinds no webhookd message has: bytes, float, double, uint64,
    a proto3 optional, a map with bool keys."""
    kind = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="shape_kinds.proto", package="shape.kinds", syntax="proto3")
    message = file.message_type.add(name="Kinds")
    entry = message.nested_type.add(name="FlagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=kind.TYPE_BOOL, label=kind.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=kind.TYPE_STRING, label=kind.LABEL_OPTIONAL)
    for number, (name, type_) in enumerate(
        [("blob", kind.TYPE_BYTES), ("ratio", kind.TYPE_DOUBLE), ("small", kind.TYPE_FLOAT), ("big", kind.TYPE_UINT64)],
        start=1,
    ):
        message.field.add(name=name, number=number, type=type_, label=kind.LABEL_OPTIONAL)
    message.oneof_decl.add(name="_maybe")
    message.field.add(
        name="maybe", number=5, type=kind.TYPE_INT32, label=kind.LABEL_OPTIONAL, oneof_index=0, proto3_optional=True
    )
    message.field.add(
        name="flags",
        number=6,
        type=kind.TYPE_MESSAGE,
        label=kind.LABEL_REPEATED,
        type_name=".shape.kinds.Kinds.FlagsEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shape.kinds.Kinds"))


def test_bytes_floats_unsigned_64_bit_optional_and_bool_keyed_maps() -> None:
    message = _kinds_message()(blob=b"\0\1", ratio=math.nan, small=0.1, big=2**64 - 1, flags={True: "on"})

    assert message_to_json(message) == {
        "blob": "AAE=",
        "ratio": "NaN",
        "small": 0.1,
        "big": 2**64 - 1,
        "maybe": None,
        "flags": {"true": "on"},
    }
    message.ratio, message.maybe = -math.inf, 0
    assert (message_to_json(message)["ratio"], message_to_json(message)["maybe"]) == ("-Infinity", 0)
