"""Bad input an adversarial caller sends is refused as bad input (4xx / INVALID_ARGUMENT naming the field,
UNAUTHENTICATED for a bad token), never a 5xx, INTERNAL, a hang or a dropped connection; and what the caller
sent is never echoed back whole.

(Event payloads, deep nesting and non-finite numbers, are covered with the payload handling.)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from rest_calls import WEBHOOKS, create, detail_of, error_of, rest_caller, violated_fields
from webhook_calls import create_webhook, field_violations, rpc_error

from support import JWT_SECRET, AuthedStub, new_tenant_id

LONG_ID = "whk_" + "A" * 10_000
# A message may name the id it could not find, but cut short: a caller can send megabytes of id.
MESSAGE_MAX = 300

GrpcCall = Callable[[AuthedStub, str], Awaitable[Any]]


async def _drain(call: Any) -> list[Any]:
    return [response async for response in call]


CALLS_WITH_AN_ID: dict[str, GrpcCall] = {
    "GetWebhook": lambda c, i: c.GetWebhook(pb.GetWebhookRequest(id=i)),
    "DeleteWebhook": lambda c, i: c.DeleteWebhook(pb.DeleteWebhookRequest(id=i)),
    "UndeleteWebhook": lambda c, i: c.UndeleteWebhook(pb.UndeleteWebhookRequest(id=i)),
    "UpdateWebhook": lambda c, i: c.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=i, name="n"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
        )
    ),
    "RotateWebhookSecret": lambda c, i: c.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=i)),
    "ResumeWebhook": lambda c, i: c.ResumeWebhook(pb.ResumeWebhookRequest(id=i)),
    "SetWebhookCredential": lambda c, i: c.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=i, header_name="Authorization", header_value="Bearer t")
    ),
    "PublishEvent": lambda c, i: c.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", webhook_id=i)),
    "GetDelivery": lambda c, i: c.GetDelivery(pb.GetDeliveryRequest(id=i)),
    "RedeliverDelivery": lambda c, i: c.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=i)),
    "RecoverWebhook": lambda c, i: c.RecoverWebhook(
        pb.RecoverWebhookRequest(id=i, since=timestamp_pb2.Timestamp(seconds=1_700_000_000))
    ),
    "DeliveryLog": lambda c, i: _drain(c.DeliveryLog(pb.DeliveryLogRequest(webhook_id=i))),
    "StreamInboundEvents": lambda c, i: _drain(c.StreamInboundEvents(pb.StreamInboundEventsRequest(webhook_id=i))),
}


@pytest.mark.parametrize("rpc", sorted(CALLS_WITH_AN_ID))
async def test_an_id_of_ten_thousand_characters_is_refused_without_echoing_it(caller, rpc: str) -> None:
    error = await rpc_error(CALLS_WITH_AN_ID[rpc](caller, LONG_ID))

    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), error.details()
    assert len(error.details()) < MESSAGE_MAX, error.details()[:MESSAGE_MAX]


async def test_a_list_filtered_by_an_id_of_ten_thousand_characters_is_not_found_without_echoing_it(caller) -> None:
    error = await rpc_error(caller.ListDeliveries(pb.ListDeliveriesRequest(webhook_id=LONG_ID)))

    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert len(error.details()) < MESSAGE_MAX, error.details()[:MESSAGE_MAX]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_of_ten_thousand_characters_over_rest_is_refused_without_echoing_it(gateway, method) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.request(
            method, f"{WEBHOOKS}/{LONG_ID}", json={"name": "n"} if method == "PATCH" else None
        )

    assert response.status_code in (400, 404), response.text[:MESSAGE_MAX]
    assert len(error_of(response)["message"]) < MESSAGE_MAX


# -- timestamps and durations out of protobuf's range ------------------------------------------------------

OUT_OF_RANGE_STAMPS = {
    "seconds 2^62": timestamp_pb2.Timestamp(seconds=2**62),
    "negative nanos": timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=-1),
}


@pytest.mark.parametrize("stamp", OUT_OF_RANGE_STAMPS.values(), ids=list(OUT_OF_RANGE_STAMPS))
async def test_out_of_range_timestamps_are_invalid_naming_the_field(caller, stamp) -> None:
    webhook = await create_webhook(caller)
    calls: dict[str, Awaitable[Any]] = {
        "since": _drain(caller.DeliveryLog(pb.DeliveryLogRequest(since=stamp))),
        "start_time": caller.ListDeliveries(pb.ListDeliveriesRequest(start_time=stamp)),
        "end_time": caller.ListDeliveries(pb.ListDeliveriesRequest(end_time=stamp)),
        "since ": caller.RecoverWebhook(pb.RecoverWebhookRequest(id=webhook.id, since=stamp)),
    }
    for field, call in calls.items():
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert field.strip() in field_violations(error), (field, error.details())


OUT_OF_RANGE_DURATIONS = {
    "seconds 2^62": duration_pb2.Duration(seconds=2**62),
    "negative nanos": duration_pb2.Duration(seconds=1, nanos=-1),
}


@pytest.mark.parametrize("overlap", OUT_OF_RANGE_DURATIONS.values(), ids=list(OUT_OF_RANGE_DURATIONS))
async def test_out_of_range_overlap_is_invalid_naming_the_field(caller, overlap) -> None:
    webhook = await create_webhook(caller)

    error = await rpc_error(caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook.id, overlap=overlap)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "overlap" in field_violations(error)


async def test_out_of_range_times_over_rest_are_bad_requests(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        webhook = (await create(rest))["webhook"]
        rotated = await rest.post(f"{WEBHOOKS}/{webhook['id']}:rotateSecret", json={"overlap": "4611686018427387904s"})
        listed = await rest.get("/api/v1/integration/deliveries", params={"start_time": "0000-01-01T00:00:00Z"})

    assert rotated.status_code == 400, rotated.text
    assert "overlap" in violated_fields(rotated)
    assert listed.status_code == 400, listed.text


# -- tokens ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["app_id", "sub"])
async def test_a_signed_token_with_nul_in_a_claim_is_unauthenticated(channel, claim: str) -> None:
    claims = {"tenant_id": new_tenant_id(), "exp": 4_000_000_000, claim: "app\x00one"}
    caller = AuthedStub(channel, claims["tenant_id"], jwt.encode(claims, JWT_SECRET, algorithm="HS256"))

    error = await rpc_error(caller.ListWebhooks(pb.ListWebhooksRequest()))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert claim in error.details()


async def test_an_authorization_header_over_the_limit_is_refused_naming_the_limit(gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.get(WEBHOOKS, headers={"Authorization": "Bearer " + "a" * 5000})

    assert response.status_code == 401
    message = error_of(response)["message"]
    assert "4096" in message and "missing" not in message


# -- urls, enums, preconditions ---------------------------------------------------------------------------


async def test_a_url_with_two_ports_is_invalid(caller) -> None:
    error = await rpc_error(create_webhook(caller, url="http://example.com:80:80/"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook.url" in field_violations(error)


async def test_a_url_with_two_ports_over_rest_is_a_bad_request(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.post(WEBHOOKS, json={"name": "n", "url": "http://example.com:80:80/"})

    assert response.status_code == 400, response.text
    assert "webhook.url" in violated_fields(response)


async def test_a_url_with_an_ipv6_zone_id_over_rest_is_a_bad_request_naming_the_url(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.post(WEBHOOKS, json={"name": "n", "url": "https://[::1%25]/"})

    assert response.status_code == 400, response.text
    [violation] = detail_of(response, "BadRequest")["fieldViolations"]
    assert violation["field"] == "webhook.url"
    assert "zone id" in violation["description"]


async def test_an_unknown_direction_number_is_invalid_over_grpc_as_over_rest(caller, gateway) -> None:
    error = await rpc_error(caller.ListWebhooks(pb.ListWebhooksRequest(direction=7)))
    async with rest_caller(gateway.url) as rest:
        response = await rest.get(WEBHOOKS, params={"direction": "sideways"})

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "direction" in field_violations(error)
    assert response.status_code == 400


async def test_an_unknown_direction_number_in_an_update_is_invalid(caller) -> None:
    webhook = await create_webhook(caller)

    error = await rpc_error(
        caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, direction=7)))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook.direction" in field_violations(error)


IF_MATCH_VALUES = {
    "past int64": b'"9223372036854775808"',
    "5,000 digits": b'"' + b"9" * 5000 + b'"',
    "non-ASCII byte": b'"\xb2"',
    "non-ASCII digit": '"٣"'.encode(),
}


@pytest.mark.parametrize("value", IF_MATCH_VALUES.values(), ids=list(IF_MATCH_VALUES))
async def test_a_bad_if_match_is_a_bad_request_naming_the_header(gateway, value: bytes) -> None:
    async with rest_caller(gateway.url) as rest:
        webhook = (await create(rest))["webhook"]
        response = await rest.patch(
            f"{WEBHOOKS}/{webhook['id']}", json={"name": "renamed"}, headers=[(b"If-Match", value)]
        )

    assert response.status_code == 400, response.text[:MESSAGE_MAX]
    assert "If-Match" in violated_fields(response)
    assert len(error_of(response)["message"]) < MESSAGE_MAX


# -- bytes that are not the request's message ---------------------------------------------------------

SERVICE = "/cpod.integration.v1.WebhookService"
# GetWebhookRequest's id (field 1, a string) holding a byte that is not UTF-8; and a field cut short.
BAD_UTF8 = b"\x0a\x03a\xffb"
CUT_SHORT = b"\x0a\x05ab"


@pytest.mark.parametrize("raw", [BAD_UTF8, CUT_SHORT], ids=["bad-utf8", "cut-short"])
async def test_a_request_that_is_not_its_message_is_invalid_argument(channel, caller, raw: bytes) -> None:
    call = channel.unary_unary(f"{SERVICE}/GetWebhook")

    error = await rpc_error(call(raw, metadata=caller.metadata))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a valid message" in field_violations(error)["request"]


async def test_a_streaming_request_that_is_not_its_message_is_invalid_argument(channel, caller) -> None:
    # DeliveryLogRequest's webhook_id is field 1, a string, like GetWebhookRequest's id.
    call = channel.unary_stream(f"{SERVICE}/DeliveryLog")

    error = await rpc_error(_drain(call(BAD_UTF8, metadata=caller.metadata)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in field_violations(error)


async def test_bytes_that_are_not_a_message_without_a_token_are_unauthenticated(channel) -> None:
    error = await rpc_error(channel.unary_unary(f"{SERVICE}/GetWebhook")(BAD_UTF8))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_random_bytes_at_every_rpc_get_an_answer_that_names_a_cause(channel, caller) -> None:
    # Random bytes often parse (unknown fields are skipped) and then meet the usual checks; the ones
    # that do not are INVALID_ARGUMENT. None may end in UNKNOWN, INTERNAL or no answer in time.
    rng = random.Random(11)
    service = pb.DESCRIPTOR.services_by_name["WebhookService"]
    codes: dict[str, set[grpc.StatusCode]] = {}
    for method in service.methods:
        path = f"{SERVICE}/{method.name}"
        for _ in range(10):
            raw = rng.randbytes(rng.randrange(1, 40))
            try:
                if method.server_streaming:
                    stream = channel.unary_stream(path)(raw, metadata=caller.metadata, timeout=5)
                    try:
                        async for _response in stream:
                            break  # a stream that opened: it answered
                    finally:
                        stream.cancel()  # a following stream would stay open on the server otherwise
                else:
                    await channel.unary_unary(path)(raw, metadata=caller.metadata, timeout=5)
            except grpc.aio.AioRpcError as error:
                codes.setdefault(method.name, set()).add(error.code())

    unanswered = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert {name: found & unanswered for name, found in codes.items() if found & unanswered} == {}
    assert any(grpc.StatusCode.INVALID_ARGUMENT in found for found in codes.values())
