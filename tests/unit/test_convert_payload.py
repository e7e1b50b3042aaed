"""api/convert.py: an event's data from PublishEventRequest, as the JSON text the body will carry."""

from __future__ import annotations

import json

import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from webhookd.api.convert import payload_json
from webhookd.domain.errors import Invalid


def struct(data: dict[str, object]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def test_payload_json_is_passed_on_exactly_as_sent() -> None:
    text = '{ "id": 9007199254740993,\n "amount": 0.1 }'
    assert payload_json(pb.PublishEventRequest(event_type="a.b", payload_json=text)) == text


def test_a_struct_is_written_compactly_with_integral_numbers_as_integers() -> None:
    request = pb.PublishEventRequest(payload=struct({"id": 7, "amount": 0.1, "tags": ["a"], "none": None, "é": True}))
    text = payload_json(request)  # a Struct keeps no key order: compare members
    assert json.loads(text) == {"id": 7, "amount": 0.1, "tags": ["a"], "none": None, "é": True}
    assert '"id":7' in text and '"amount":0.1' in text and '"é":true' in text


def test_no_payload_at_all_is_an_empty_object() -> None:
    assert payload_json(pb.PublishEventRequest(event_type="a.b")) == "{}"


def test_payload_and_payload_json_together_are_invalid() -> None:
    with pytest.raises(Invalid) as raised:
        payload_json(pb.PublishEventRequest(payload=struct({"a": 1}), payload_json='{"a": 1}'))
    assert [v.field for v in raised.value.violations] == ["payload_json"]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_struct_holding_a_non_finite_number_is_invalid_naming_its_path(number: float) -> None:
    request = pb.PublishEventRequest(payload=struct({"ok": 1, "a": {"b": [1, number]}}))
    with pytest.raises(Invalid) as raised:
        payload_json(request)
    [violation] = raised.value.violations
    assert violation.field == "payload.a.b[1]" and "not a finite number" in violation.description


def test_a_struct_round_trips_through_json() -> None:
    data = {"nested": {"list": [1, 2.5, "x", False, None]}, "n": -3}
    assert json.loads(payload_json(pb.PublishEventRequest(payload=struct(data)))) == data
