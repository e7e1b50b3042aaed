"""A webhook's static headers over gRPC: what is stored is what the receiver gets, and what could not
arrive as stored, or would override webhookd's own headers, is INVALID_ARGUMENT on its entry."""

from __future__ import annotations

import grpc
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2
from webhook_calls import create, create_webhook, field_violations, rpc_error


async def published(caller) -> str:  # type: ignore[no-untyped-def]
    answer = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json="{}"))
    return str(answer.event_id)


async def invalid(call) -> dict[str, str]:  # type: ignore[no-untyped-def]
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    return field_violations(error)


async def test_static_headers_arrive_and_are_recorded_exactly_as_stored(caller, workers, receiver, database) -> None:
    headers = {"X-Tenant-ID": "acme", "x-lower": "1", "X-Tab": "a\tb", "X-Unicode": "café ✓", "X-Empty": ""}
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], headers=headers)
    event_id = await published(caller)

    [request] = await receiver.wait_for(1)
    [row] = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = :e AND attempts = 1 AND lease_token IS NULL", bool, e=event_id
    )
    fetched = await caller.GetWebhook(pb.GetWebhookRequest(id=hook.id))
    [attempt] = (await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))).attempts
    assert dict(hook.headers) == dict(fetched.webhook.headers) == headers
    assert {name: request.headers[name] for name in headers} == headers
    assert {name: attempt.request_headers[name] for name in headers} == headers


@pytest.mark.parametrize("value", [" leading", "trailing ", "\tboth\t", " "])
async def test_a_header_value_with_surrounding_whitespace_is_invalid(caller, value: str) -> None:
    """HTTP drops a value's leading and trailing spaces and tabs on the way (RFC 9110 5.5): the
    receiver would get another value than the one stored and shown."""
    violations = await invalid(create(caller, headers={"X-Token": value}))
    assert list(violations) == ['webhook.headers["X-Token"]']
    assert "leading or trailing" in violations['webhook.headers["X-Token"]']


@pytest.mark.parametrize(
    "name",
    [
        "WEBHOOK-SIGNATURE",
        "Webhook-Id",
        "webhook-TIMESTAMP",
        "x-HUB-signature-256",
        "X-Hub-Signature-256-Previous",
        "Svix-Signature",
        "content-TYPE",
        "HOST",
        "content-length",
        "transfer-encoding",
        "Connection",
        "Proxy-Authorization",
        "Cookie",
    ],
)
async def test_an_update_cannot_add_a_header_webhookd_owns_in_any_case(caller, name: str) -> None:
    hook = await create_webhook(caller, headers={"X-Fine": "ok"})
    update = pb.UpdateWebhookRequest(
        webhook=wpb.Webhook(id=hook.id, headers={"X-Fine": "ok", name: "forged"}),
        update_mask=field_mask_pb2.FieldMask(paths=["headers"]),
    )
    violations = await invalid(caller.UpdateWebhook(update))
    assert list(violations) == [f'webhook.headers["{name}"]']
    fetched = await caller.GetWebhook(pb.GetWebhookRequest(id=hook.id))
    assert dict(fetched.webhook.headers) == {"X-Fine": "ok"}


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X Foo": "1"}, 'webhook.headers["X Foo"]'),
        ({"X-Foo:": "1"}, 'webhook.headers["X-Foo:"]'),
        ({"X-Föö": "1"}, 'webhook.headers["X-F\\u00f6\\u00f6"]'),  # quoted as JSON, ASCII only
        ({"X-Foo\r\nX-Injected": "1"}, 'webhook.headers["X-Foo\\r\\nX-Injected"]'),
        ({"X-Foo": "a\x00b"}, 'webhook.headers["X-Foo"]'),
        ({"X-Foo": "a\nX-Injected: 1"}, 'webhook.headers["X-Foo"]'),
        ({"X-Foo": "a\x85b"}, 'webhook.headers["X-Foo"]'),  # C1 NEL: a line break to Unicode
        ({"X-Foo": "v" * 1025}, 'webhook.headers["X-Foo"]'),
        ({f"X-H{i}": "v" for i in range(21)}, "webhook.headers"),
        ({f"X-H{i}": "v" * 1016 for i in range(9)}, "webhook.headers"),
    ],
    ids=[
        "space",
        "colon",
        "non-ascii-name",
        "crlf-name",
        "nul",
        "lf",
        "c1-control",
        "long-value",
        "too-many",
        "too-large",
    ],
)
async def test_headers_that_cannot_be_sent_as_stored_are_invalid_on_their_entry(
    caller, headers: dict[str, str], field: str
) -> None:
    violations = await invalid(create(caller, headers=headers))
    assert list(violations) == [field]


async def test_the_same_name_twice_in_another_case_is_invalid_on_one_of_them(caller) -> None:
    # A protobuf map's order is not the caller's: either spelling may be the one reported.
    violations = await invalid(create(caller, headers={"X-Foo": "1", "x-foo": "2"}))
    [field] = violations
    assert field in ('webhook.headers["X-Foo"]', 'webhook.headers["x-foo"]')
    assert "case-insensitive" in violations[field]


async def test_a_violation_names_a_header_of_the_longest_allowed_name_whole(caller) -> None:
    name = "X-" + "a" * 62  # 64 characters, the most a name may have
    violations = await invalid(create(caller, headers={name: "a\nb"}))
    assert list(violations) == [f'webhook.headers["{name}"]']
