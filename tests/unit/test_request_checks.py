import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from webhookd.api.request_checks import check_request
from webhookd.domain.errors import Invalid


def _fields(error: Invalid) -> list[str]:
    return [violation.field for violation in error.violations]


def test_nul_in_an_id_is_invalid_argument_naming_the_field() -> None:
    with pytest.raises(Invalid) as raised:
        check_request(pb.GetWebhookRequest(id="whk_\x00"))
    assert _fields(raised.value) == ["id"]


def test_nul_in_nested_repeated_and_map_fields_is_found() -> None:
    webhook = wpb.Webhook(name="ok", tags=["a", "b\x00"], headers={"X-A": "v\x00"})
    with pytest.raises(Invalid) as raised:
        check_request(pb.CreateWebhookRequest(webhook=webhook))
    assert sorted(_fields(raised.value)) == ['webhook.headers["X-A"]', "webhook.tags[1]"]


def test_a_map_entry_is_named_as_validation_names_it_with_its_key_quoted_as_json() -> None:
    webhook = wpb.Webhook(name="ok", headers={"X-\x00": "v", 'X-"Q': "\x00"})
    with pytest.raises(Invalid) as raised:
        check_request(pb.CreateWebhookRequest(webhook=webhook))
    assert sorted(_fields(raised.value)) == ['webhook.headers["X-\\"Q"]', 'webhook.headers["X-\\u0000"]']


def test_clean_requests_and_json_payloads_pass() -> None:
    payload = struct_pb2.Struct()
    payload.update({"text": "nul \x00 is fine inside a JSON payload"})
    check_request(pb.PublishEventRequest(event_type="a.b", payload=payload))
    check_request(pb.ListWebhooksRequest(name="orders", tag="eu"))


@pytest.mark.parametrize(
    "request_message",
    [pb.GetWebhookRequest(), pb.DeleteWebhookRequest(version=3), pb.UndeleteWebhookRequest()],
    ids=lambda message: type(message).__name__,
)
def test_an_empty_required_id_is_invalid_argument_naming_it(request_message) -> None:
    # Not NOT_FOUND for "webhook  not found": the caller forgot the id, and AIP-203 says so.
    with pytest.raises(Invalid) as raised:
        check_request(request_message)
    assert [(v.field, v.description) for v in raised.value.violations] == [("id", "is required")]


def test_required_strings_that_are_set_pass() -> None:
    check_request(pb.GetWebhookRequest(id="whk_1"))
    check_request(pb.DeleteWebhookRequest(id="whk_1"))
