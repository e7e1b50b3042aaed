"""The gateway end to end: HTTP in, a real grpc.aio server out (with an in-memory fake servicer
that exists only to exercise the gateway), HTTP back."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import any_pb2, duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webhookd.domain.errors import VIOLATIONS_MAX
from webhookd.gateway.app import create_gateway_app

TOKEN = "Bearer good"


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, *details: Message) -> None:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    await context.abort(code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),))


class FakeWebhooks(rpc.WebhookServiceServicer):
    """Just enough behaviour to show the gateway's translation; records what it was sent."""

    def __init__(self) -> None:
        self.store: dict[str, webhook_pb2.Webhook] = {}
        self.requests: list[Message] = []
        self.metadata: list[dict[str, str]] = []

    async def _enter(self, request: Message, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.metadata.append(metadata)
        if metadata.get("authorization") != TOKEN:
            await abort(context, grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")

    async def _get(self, webhook_id: str, context: grpc.aio.ServicerContext) -> webhook_pb2.Webhook:
        if webhook_id not in self.store:
            info = error_details_pb2.ErrorInfo(
                reason="NOT_FOUND", domain="integration.cpod.io", metadata={"id": webhook_id}
            )
            await abort(context, grpc.StatusCode.NOT_FOUND, f"webhook {webhook_id} not found", info)
        return self.store[webhook_id]

    async def _check_version(self, current: webhook_pb2.Webhook, given: int, context: grpc.aio.ServicerContext) -> None:
        if given and given != current.version:
            info = error_details_pb2.ErrorInfo(reason="VERSION_MISMATCH", domain="integration.cpod.io")
            await abort(context, grpc.StatusCode.ABORTED, f"version {given} is not current ({current.version})", info)

    async def CreateWebhook(self, request: pb.CreateWebhookRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        if not request.webhook.url.startswith("https://"):
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field="webhook.url", description="must be an https URL")
                ]
            )
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "webhook.url: must be an https URL", bad)
        webhook = webhook_pb2.Webhook()
        webhook.CopyFrom(request.webhook)
        webhook.id = f"whk_{len(self.store) + 1}"
        webhook.tenant_id = "tnt_1"
        webhook.version = 1
        webhook.direction = webhook.direction or webhook_pb2.DIRECTION_OUTBOUND
        webhook.created_at.CopyFrom(timestamp_pb2.Timestamp(seconds=1714557600))
        self.store[webhook.id] = webhook
        return pb.CreateWebhookResponse(webhook=webhook, signing_secret="whsec_test")

    async def GetWebhook(self, request: pb.GetWebhookRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        return pb.GetWebhookResponse(webhook=await self._get(request.id, context))

    async def ListWebhooks(self, request: pb.ListWebhooksRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        found = [w for w in self.store.values() if not request.direction or w.direction == request.direction]
        return pb.ListWebhooksResponse(webhooks=found, next_page_token="")

    async def UpdateWebhook(self, request: pb.UpdateWebhookRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        current = await self._get(request.webhook.id, context)
        await self._check_version(current, request.webhook.version, context)
        request.update_mask.MergeMessage(request.webhook, current, replace_repeated_field=True)
        current.version += 1
        return pb.UpdateWebhookResponse(webhook=current)

    async def DeleteWebhook(self, request: pb.DeleteWebhookRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        current = await self._get(request.id, context)
        await self._check_version(current, request.version, context)
        current.is_deleted = True
        current.version += 1
        return pb.DeleteWebhookResponse(webhook=current)

    async def UndeleteWebhook(self, request: pb.UndeleteWebhookRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        current = await self._get(request.id, context)
        if not current.is_deleted:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, f"webhook {request.id} is not deleted")
        current.is_deleted = False
        return pb.UndeleteWebhookResponse(webhook=current)

    async def PublishEvent(self, request: pb.PublishEventRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._enter(request, context)
        if request.event_type == "rate.limited":
            retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=5))
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many events", retry)
        return pb.PublishEventResponse(event_id=f"evt_{request.idempotency_key or 'x'}", deliveries_queued=1)


@dataclass
class Gateway:
    http: httpx.AsyncClient
    fake: FakeWebhooks
    extra: list[str] = field(default_factory=list)

    def last(self) -> Any:
        return self.fake.requests[-1]


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[Gateway]:
    fake = FakeWebhooks()
    server = grpc.aio.server()
    rpc.add_WebhookServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def manifest(_: Any) -> PlainTextResponse:
        return PlainTextResponse("manifest")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as grpc_channel:
        app = create_gateway_app(
            grpc_channel, max_request_bytes=2048, extra_routes=[Route("/api/v1/manifest", manifest)]
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers={"Authorization": TOKEN}
        ) as http:
            yield Gateway(http, fake)
    await server.stop(None)


async def create(gateway: Gateway, **fields: Any) -> dict[str, Any]:
    body = {"name": "orders", "url": "https://example.com/hook", **fields}
    response = await gateway.http.post("/api/v1/integration/webhooks", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json()["webhook"])


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert list(body) == ["error"] and body["error"]["code"] == response.status_code
    return dict(body["error"])


def violations_of(response: httpx.Response) -> list[dict[str, str]]:
    """The field violations of an error response's BadRequest detail."""
    [bad_request] = [d for d in error_of(response)["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    return list(bad_request["fieldViolations"])


async def test_create_returns_the_webhook_and_its_secret(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/webhooks",
        json={
            "name": "orders",
            "url": "https://example.com/h",
            "retryPolicy": {"maxAttempts": 3},
            "direction": "outbound",
            "event_types": ["rfp.created"],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["webhook", "signing_secret", "public_key", "duplicate"]
    assert body["signing_secret"] == "whsec_test"
    assert body["webhook"]["retry_policy"] == {"maxAttempts": 3, "backoff": "", "timeoutMs": 0}
    assert body["webhook"]["direction"] == "outbound"
    assert body["webhook"]["created_at"] == "2024-05-01T10:00:00Z"
    assert gateway.last().webhook.retry_policy.max_attempts == 3


async def test_create_refuses_the_old_wrapper_naming_the_field(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/webhooks", json={"webhook": {"name": "orders"}})
    assert response.status_code == 400
    assert violations_of(response) == [
        {"field": "webhook.webhook", "description": "unknown field 'webhook' in Webhook"}
    ]


async def test_a_chosen_signing_secret_comes_from_its_header_never_the_query(gateway: Gateway) -> None:
    secret = "whsec_" + "A" * 32
    body = {"name": "orders", "url": "https://example.com/h"}
    response = await gateway.http.post(
        "/api/v1/integration/webhooks", json=body, headers={"Webhook-Signing-Secret": secret}
    )
    assert response.status_code == 200 and gateway.last().signing_secret == secret

    in_url = await gateway.http.post(f"/api/v1/integration/webhooks?signing_secret={secret}", json=body)
    assert in_url.status_code == 400
    [violation] = violations_of(in_url)
    assert violation["field"] == "signing_secret" and "Webhook-Signing-Secret" in violation["description"]


async def test_get_returns_the_resource_itself_with_an_etag(gateway: Gateway) -> None:
    created = await create(gateway)
    response = await gateway.http.get(f"/api/v1/integration/webhooks/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_token_and_request_id_are_forwarded(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/webhooks", headers={"X-Request-Id": "req-42"})
    assert response.status_code == 200
    assert gateway.fake.metadata[-1]["authorization"] == TOKEN
    assert gateway.fake.metadata[-1]["x-request-id"] == "req-42"
    assert response.headers["x-request-id"] == "req-42"


async def test_a_request_id_is_generated_when_absent(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/webhooks")
    assert len(response.headers["x-request-id"]) == 32
    assert gateway.fake.metadata[-1]["x-request-id"] == response.headers["x-request-id"]


async def test_missing_token_is_401_with_www_authenticate(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/webhooks", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["status"] == "UNAUTHENTICATED"


async def test_not_found_carries_the_servers_error_info(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/webhooks/whk_missing")
    assert response.status_code == 404
    error = error_of(response)
    assert error["status"] == "NOT_FOUND" and error["message"] == "webhook whk_missing not found"
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "NOT_FOUND",
            "domain": "integration.cpod.io",
            "metadata": {"id": "whk_missing"},
        }
    ]


async def test_invalid_argument_carries_field_violations(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/webhooks", json={"name": "x", "url": "http://x"})
    assert response.status_code == 400
    assert violations_of(response) == [{"field": "webhook.url", "description": "must be an https URL"}]


async def test_list_filters_come_from_the_query(gateway: Gateway) -> None:
    await create(gateway, direction="inbound")
    response = await gateway.http.get("/api/v1/integration/webhooks", params={"direction": "inbound", "pageSize": 5})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["webhooks", "next_page_token"]
    assert {w["direction"] for w in body["webhooks"]} == {"inbound"}
    assert (gateway.last().direction, gateway.last().page_size) == (webhook_pb2.DIRECTION_INBOUND, 5)


async def test_patch_updates_only_the_fields_sent(gateway: Gateway) -> None:
    created = await create(gateway, enabled=True, tags=["a"], retry_policy={"maxAttempts": 4, "timeoutMs": 900})
    response = await gateway.http.patch(
        f"/api/v1/integration/webhooks/{created['id']}", json={"enabled": False, "retryPolicy": {"maxAttempts": 2}}
    )
    assert response.status_code == 200, response.text
    assert gateway.last().update_mask == field_mask_pb2.FieldMask(paths=["enabled", "retry_policy.max_attempts"])
    updated = response.json()
    assert updated["enabled"] is False and updated["tags"] == ["a"] and updated["name"] == "orders"
    assert updated["retry_policy"] == {"maxAttempts": 2, "backoff": "", "timeoutMs": 900}
    assert response.headers["etag"] == '"2"'


async def test_patch_honours_an_explicit_update_mask(gateway: Gateway) -> None:
    created = await create(gateway)
    response = await gateway.http.patch(
        f"/api/v1/integration/webhooks/{created['id']}?update_mask=name",
        json={"name": "renamed", "url": "https://ignored"},
    )
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["url"]) == ("renamed", created["url"])


async def test_if_match_makes_a_stale_patch_412(gateway: Gateway) -> None:
    created = await create(gateway)
    path = f"/api/v1/integration/webhooks/{created['id']}"
    ok = await gateway.http.patch(path, json={"name": "v2"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and gateway.last().webhook.version == 1
    stale = await gateway.http.patch(path, json={"name": "v3"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert error_of(stale)["status"] == "FAILED_PRECONDITION"
    assert error_of(stale)["details"][0]["reason"] == "VERSION_MISMATCH"


async def test_a_weak_if_match_is_412_without_calling_the_service(gateway: Gateway) -> None:
    created = await create(gateway)
    calls = len(gateway.fake.requests)
    response = await gateway.http.patch(
        f"/api/v1/integration/webhooks/{created['id']}", json={"name": "v2"}, headers={"If-Match": 'W/"1"'}
    )
    assert response.status_code == 412
    assert (error_of(response)["status"], error_of(response)["details"][0]["reason"]) == (
        "FAILED_PRECONDITION",
        "WEAK_ETAG",
    )
    assert len(gateway.fake.requests) == calls


@pytest.mark.parametrize("if_none_match", ['"1"', 'W/"1"', '"7", "1"', "*"])
async def test_get_with_the_current_etag_in_if_none_match_is_304(gateway: Gateway, if_none_match: str) -> None:
    created = await create(gateway)
    response = await gateway.http.get(
        f"/api/v1/integration/webhooks/{created['id']}", headers={"If-None-Match": if_none_match}
    )
    assert (response.status_code, response.content) == (304, b"")
    assert response.headers["etag"] == '"1"'


async def test_get_with_an_old_etag_in_if_none_match_is_the_resource(gateway: Gateway) -> None:
    created = await create(gateway)
    path = f"/api/v1/integration/webhooks/{created['id']}"
    await gateway.http.patch(path, json={"name": "v2"})
    response = await gateway.http.get(path, headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert (response.json()["name"], response.headers["etag"]) == ("v2", '"2"')


async def test_a_stale_version_in_the_body_is_409(gateway: Gateway) -> None:
    created = await create(gateway)
    path = f"/api/v1/integration/webhooks/{created['id']}"
    await gateway.http.patch(path, json={"name": "v2"})
    stale = await gateway.http.patch(path, json={"name": "v3", "version": 1})
    assert stale.status_code == 409
    assert error_of(stale)["details"][0]["reason"] == "VERSION_MISMATCH"


async def test_if_match_that_contradicts_the_body_version_is_400(gateway: Gateway) -> None:
    created = await create(gateway)
    response = await gateway.http.patch(
        f"/api/v1/integration/webhooks/{created['id']}", json={"version": 1}, headers={"If-Match": '"2"'}
    )
    assert response.status_code == 400


async def test_delete_with_if_match_sets_the_request_version(gateway: Gateway) -> None:
    created = await create(gateway)
    path = f"/api/v1/integration/webhooks/{created['id']}"
    stale = await gateway.http.delete(path, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and gateway.last().version == 7
    deleted = await gateway.http.delete(path, headers={"If-Match": '"1"'})
    assert deleted.status_code == 200
    assert deleted.json()["is_deleted"] is True and deleted.headers["etag"] == '"2"'


async def test_undelete_custom_verb_needs_no_body(gateway: Gateway) -> None:
    created = await create(gateway)
    await gateway.http.delete(f"/api/v1/integration/webhooks/{created['id']}")
    response = await gateway.http.post(f"/api/v1/integration/webhooks/{created['id']}:undelete")
    assert response.status_code == 200
    assert response.json()["is_deleted"] is False
    again = await gateway.http.post(f"/api/v1/integration/webhooks/{created['id']}:undelete", json={})
    assert again.status_code == 409 and error_of(again)["status"] == "ALREADY_EXISTS"


async def test_idempotency_key_header_reaches_the_request(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/events",
        json={"event_type": "rfp.created", "payload": {"a": 1}},
        headers={"Idempotency-Key": "k1"},
    )
    assert response.status_code == 200
    assert response.json()["event_id"] == "evt_k1"
    assert gateway.last().payload_json == '{"a":1}'


async def test_the_payload_reaches_the_service_as_the_exact_text_sent(gateway: Gateway) -> None:
    payload = (
        '{ "snowflake": 9007199254740993,\n  "amount": 0.1, "exact": 1.10, "big": 123456789012345678901234567890 }'
    )
    body = '{"event_type": "rfp.created", "payload": ' + payload + "}"

    response = await gateway.http.post(
        "/api/v1/integration/events", content=body.encode(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert gateway.last().payload_json == payload and not gateway.last().HasField("payload")


async def test_payload_json_is_not_a_rest_field(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/events", json={"event_type": "rfp.created", "payload_json": '{"a": 1}'}
    )
    assert response.status_code == 400
    assert violations_of(response)[0]["field"] == "payload_json"


async def test_a_payload_that_is_not_an_object_is_400(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/events", json={"event_type": "a.b", "payload": [1]})
    assert response.status_code == 400
    assert violations_of(response) == [{"field": "payload", "description": "expected a JSON object"}]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"a": NaN}', "payload.a"),
        ('{"a": [Infinity]}', "payload.a[0]"),
        ('{"a": -Infinity}', "payload.a"),
        ('{"a": {"b": 1e400}}', "payload.a.b"),
        ('{"a": ' + "[" * 900 + "]" * 900 + "}", "payload"),  # the 2 KiB test limit; 100,000 in integration/
    ],
    ids=["nan", "infinity", "minus-infinity", "1e400", "nested-900"],
)
async def test_a_payload_json_cannot_carry_is_400_naming_the_field(gateway: Gateway, payload: str, field: str) -> None:
    calls = len(gateway.fake.requests)
    body = '{"event_type": "a.b", "payload": ' + payload + "}"

    response = await gateway.http.post(
        "/api/v1/integration/events", content=body.encode(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in violations_of(response)] == [field]
    assert len(gateway.fake.requests) == calls


async def test_a_resource_body_nested_too_deep_is_400_naming_the_field(gateway: Gateway) -> None:
    body = '{"name": "x", "headers": ' + "[" * 900 + "]" * 900 + "}"
    response = await gateway.http.post(
        "/api/v1/integration/webhooks", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert violations_of(response)[0]["field"] == "webhook.headers"


async def test_resource_exhausted_with_retry_info_sets_retry_after(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/events", json={"event_type": "rate.limited"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"


async def test_unknown_field_is_400_naming_it(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/webhooks", json={"name": "x", "colour": "red"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert violations_of(response) == [{"field": "webhook.colour", "description": "unknown field 'colour' in Webhook"}]


async def test_a_body_of_many_unknown_fields_gets_a_bounded_error(gateway: Gateway) -> None:
    body = {f"k{n}": 0 for n in range(200)}
    response = await gateway.http.post("/api/v1/integration/webhooks", json=body)
    assert response.status_code == 400
    info, bad_request = error_of(response)["details"]
    assert info["reason"] == "INVALID_ARGUMENT"
    assert len(bad_request["fieldViolations"]) == VIOLATIONS_MAX
    assert len(response.content) < 16 * 1024


async def test_malformed_json_is_400(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/webhooks", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["details"][0]["reason"] == "MALFORMED_JSON"


async def test_wrong_content_type_is_415(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/webhooks", content=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert error_of(response)["details"][0]["reason"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip"])
async def test_a_body_in_a_content_coding_is_415_naming_the_one_accepted(gateway: Gateway, coding: str) -> None:
    """RFC 9110 (15.5.16): an unsupported content coding is 415, with Accept-Encoding saying what is
    accepted. Read as it came, a gzip body was `not valid JSON: not UTF-8`, and a plain body under
    a coding it does not have was served."""
    served = len(gateway.fake.requests)
    plain = json.dumps({"name": "orders", "url": "https://example.com/h"}).encode()
    for body in (gzip.compress(plain), plain):
        response = await gateway.http.post(
            "/api/v1/integration/webhooks",
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status_code == 415, response.text
        assert response.headers["accept-encoding"] == "identity"
        error = error_of(response)
        assert error["details"][0]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
        assert coding in error["message"]
    assert len(gateway.fake.requests) == served


async def test_a_body_in_the_identity_coding_is_served(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/webhooks",
        json={"name": "orders", "url": "https://example.com/h"},
        headers={"Content-Encoding": "Identity"},
    )
    assert response.status_code == 200, response.text


async def test_a_declared_oversize_body_is_413_before_reading(gateway: Gateway) -> None:
    response = await gateway.http.post("/api/v1/integration/webhooks", json={"name": "x" * 4000})
    assert response.status_code == 413


async def test_an_undeclared_oversize_body_is_413_while_reading(gateway: Gateway) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = await gateway.http.post(
        "/api/v1/integration/webhooks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["details"][0]["metadata"] == {"limit_bytes": "2048"}


async def test_unknown_route_is_404_in_the_error_shape(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"


async def test_wrong_method_is_405_with_allow(gateway: Gateway) -> None:
    response = await gateway.http.put("/api/v1/integration/webhooks/whk_1", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert (error_of(response)["code"], error_of(response)["status"]) == (405, "UNIMPLEMENTED")


async def test_head_of_a_resource_is_its_get_without_the_body(gateway: Gateway) -> None:
    created = await create(gateway)
    url = f"/api/v1/integration/webhooks/{created['id']}"
    get = await gateway.http.get(url)
    head = await gateway.http.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == get.headers["content-length"]
    assert isinstance(gateway.last(), pb.GetWebhookRequest)


async def test_head_answers_304_and_errors_as_get_does(gateway: Gateway) -> None:
    created = await create(gateway)
    url = f"/api/v1/integration/webhooks/{created['id']}"
    unchanged = await gateway.http.head(url, headers={"If-None-Match": '"1"'})
    assert unchanged.status_code == 304
    missing = await gateway.http.head("/api/v1/integration/webhooks/whk_missing")
    assert (missing.status_code, missing.content) == (404, b"")


async def test_allow_lists_head_beside_get(gateway: Gateway) -> None:
    response = await gateway.http.put("/api/v1/integration/webhooks", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"


# Mounted by the server processes beside the gateway (app.py, runners.py), not by create_gateway_app.
MOUNTED_ELSEWHERE = {"/readyz", "/metrics", "/playground", "/api/v1/integration/inbound/{webhook_id}"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def test_the_openapi_document_lists_exactly_the_methods_each_route_answers(gateway: Gateway) -> None:
    document = (await gateway.http.get("/api/v1/openapi.json")).json()
    unmounted = set()
    for path, item in document["paths"].items():
        url = re.sub(r"{[^}]+}", "x1", path)
        statuses = {}
        for method in METHODS:
            body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            statuses[method] = (await gateway.http.request(method, url, params={"follow": "false"}, **body)).status_code
        if set(statuses.values()) == {404}:
            unmounted.add(path)
            continue
        answered = {method.lower() for method, status in statuses.items() if status != 405}
        assert answered == set(item), path
    assert unmounted == MOUNTED_ELSEWHERE


async def test_get_on_a_custom_verb_is_405_not_a_lookup(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/integration/webhooks/whk_1:undelete")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_health_and_openapi_need_no_token(gateway: Gateway) -> None:
    health = await gateway.http.get("/healthz", headers={"Authorization": ""})
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    document = await gateway.http.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert document.status_code == 200 and document.json()["openapi"] == "3.1.0"


async def test_extra_routes_are_served(gateway: Gateway) -> None:
    response = await gateway.http.get("/api/v1/manifest")
    assert (response.status_code, response.text) == (200, "manifest")


async def test_an_unreachable_server_is_503() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as dead:
        app = create_gateway_app(dead, unary_timeout_seconds=2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            response = await http.get("/api/v1/integration/webhooks")
    assert response.status_code == 503
    assert error_of(response)["status"] == "UNAVAILABLE"
    assert error_of(response)["message"] == "server unavailable: retry later"  # gRPC's words name the address
    assert response.headers["retry-after"] == "1"


async def test_wrong_method_on_a_plain_route_is_405_in_the_error_shape(gateway: Gateway) -> None:
    response = await gateway.http.post("/healthz")
    assert response.status_code == 405
    assert error_of(response)["status"] == "UNIMPLEMENTED"


async def test_idempotency_key_in_body_and_header_must_agree(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/api/v1/integration/events",
        json={"event_type": "rfp.created", "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )
    assert response.status_code == 400
    assert violations_of(response)[0]["field"] == "idempotency_key"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/integration/webhooks", {"name": "orders", "url": "https://example.com/hook"}),
        ("/api/v1/integration/events", {"event_type": "rfp.created"}),
    ],
    ids=["create", "publish"],
)
@pytest.mark.parametrize("sent", [[b""], [b"a", b"b"], [b"a", b"a"]], ids=["empty", "two keys", "one key twice"])
async def test_an_idempotency_key_header_empty_or_repeated_is_400_and_nothing_is_called(
    gateway: Gateway, path: str, body: dict[str, Any], sent: list[bytes]
) -> None:
    """An empty header (`-H "Idempotency-Key: $KEY"` with KEY unset) would make the write unkeyed, and
    which of several keys a proxy honours differs: either way a retry could write twice."""
    served = len(gateway.fake.requests)

    response = await gateway.http.post(path, json=body, headers=[(b"Idempotency-Key", value) for value in sent])

    assert response.status_code == 400, response.text
    assert [v["field"] for v in violations_of(response)] == ["idempotency_key"]
    assert len(gateway.fake.requests) == served


async def test_if_match_past_int64_or_in_other_digits_is_400_naming_the_header(gateway: Gateway) -> None:
    created = await create(gateway)
    path = f"/api/v1/integration/webhooks/{created['id']}"
    for value in (b'"9223372036854775808"', b'"' + b"9" * 5000 + b'"', b'"\xb2"', b'"\xd9\xa3"'):
        response = await gateway.http.patch(path, json={"name": "v2"}, headers=[(b"If-Match", value)])
        assert response.status_code == 400, value[:20]
        assert violations_of(response)[0]["field"] == "If-Match"


async def test_several_authorization_headers_are_401_even_when_alike(gateway: Gateway) -> None:
    """Which one a proxy or a framework honours differs: none is chosen by a guess."""
    served = len(gateway.fake.requests)
    token = f"Bearer {TOKEN}".encode()
    response = await gateway.http.get(
        "/api/v1/integration/webhooks", headers=[(b"Authorization", token), (b"Authorization", token)]
    )

    assert response.status_code == 401
    assert "send one authorization header, not 2" in error_of(response)["message"]
    assert len(gateway.fake.requests) == served


async def test_an_authorization_header_that_cannot_be_passed_on_is_401_saying_why(gateway: Gateway) -> None:
    too_long = await gateway.http.get("/api/v1/integration/webhooks", headers={"Authorization": "Bearer " + "a" * 4096})
    unprintable = await gateway.http.get("/api/v1/integration/webhooks", headers=[(b"Authorization", b"Bearer \xff")])

    assert too_long.status_code == unprintable.status_code == 401
    assert "longer than 4096 characters" in error_of(too_long)["message"]
    assert "printable ASCII" in error_of(unprintable)["message"]
    assert too_long.headers["WWW-Authenticate"] == "Bearer"


async def test_an_integer_query_parameter_takes_ascii_digits_only(gateway: Gateway) -> None:
    """As in a JSON body: Python's int() would also read `1_0`, ` 5`, `+5` and `٣` (an Arabic-Indic 3)."""
    served = len(gateway.fake.requests)
    cases = [(value, "is not an integer") for value in ("1_0", " 5", "5 ", "+5", "\u0663", "\u00b2")]
    for value, says in [*cases, ("9" * 5000, "is out of range: more than 20 digits")]:
        response = await gateway.http.get("/api/v1/integration/webhooks", params={"page_size": value})
        assert response.status_code == 400, value[:20]
        [violation] = violations_of(response)
        assert violation["field"] == "page_size"
        assert violation["description"].endswith(says), violation
    assert len(gateway.fake.requests) == served


# Accept headers that admit JSON, however they spell it, and one that is absent or empty.
ADMITS_JSON = [
    None,
    "",
    "*/*",
    "application/*",
    "application/json",
    "Application/JSON; charset=utf-8",
    "application/json;q=0.1, text/html",
    "text/html, application/xhtml+xml, */*;q=0.8",  # a browser's
]
# ...and ones that do not: JSON is not among them, or is refused by a q of 0.
REFUSES_JSON = ["text/html", "application/xml", "text/*", "application/json;q=0, */*", "application/x-ndjson"]


@pytest.mark.parametrize("accept", ADMITS_JSON)
async def test_an_accept_that_admits_json_gets_json(gateway: Gateway, accept: str | None) -> None:
    created = await create(gateway)
    headers = {} if accept is None else {"Accept": accept}
    response = await gateway.http.get(f"/api/v1/integration/webhooks/{created['id']}", headers=headers)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    assert response.json()["id"] == created["id"]


async def test_accept_sent_on_two_lines_is_one_list(gateway: Gateway) -> None:
    created = await create(gateway)
    headers = [("Accept", "text/html"), ("Accept", "application/json;q=0.5")]
    response = await gateway.http.get(f"/api/v1/integration/webhooks/{created['id']}", headers=headers)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")


@pytest.mark.parametrize("accept", REFUSES_JSON)
async def test_an_accept_without_json_is_406_in_the_json_error_shape_without_calling_the_service(
    gateway: Gateway, accept: str
) -> None:
    calls = len(gateway.fake.requests)
    posted = await gateway.http.post(
        "/api/v1/integration/webhooks",
        json={"name": "orders", "url": "https://example.com/hook"},
        headers={"Accept": accept},
    )
    listed = await gateway.http.get("/api/v1/integration/webhooks", headers={"Accept": accept})
    assert (posted.status_code, listed.status_code) == (406, 406)
    assert posted.headers["content-type"] == "application/json"
    error = error_of(posted)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "NOT_ACCEPTABLE"
    assert [v["field"] for v in violations_of(posted)] == ["Accept"]
    assert "application/json" in error["message"]
    assert len(gateway.fake.requests) == calls  # nothing was created that could not be answered


async def test_a_field_given_in_both_spellings_in_the_query_is_given_more_than_once(gateway: Gateway) -> None:
    """`page_size` and `pageSize` name one field: two values for it are refused, not the last one kept."""
    served = len(gateway.fake.requests)
    response = await gateway.http.get("/api/v1/integration/webhooks", params=[("page_size", "1"), ("pageSize", "50")])
    assert response.status_code == 400
    given_twice = {"field": "page_size", "description": "given more than once but takes one value"}
    assert violations_of(response) == [given_twice]
    assert len(gateway.fake.requests) == served


async def test_a_secret_or_idempotency_key_header_in_utf8_reaches_the_service_as_written(gateway: Gateway) -> None:
    """Header bytes are UTF-8 from every client that sends them: read as Latin-1 (HTTP's historical
    default), `é` became `Ã©`, a secret the caller does not hold and a key its body twin does not equal."""
    secret, key = "ключ-подписи-для-вебхука", "заказ-42"
    response = await gateway.http.post(
        "/api/v1/integration/webhooks",
        json={"name": "orders", "url": "https://example.com/h"},
        headers=[(b"Webhook-Signing-Secret", secret.encode()), (b"Idempotency-Key", key.encode())],
    )
    assert response.status_code == 200, response.text
    assert (gateway.last().signing_secret, gateway.last().idempotency_key) == (secret, key)

    published = await gateway.http.post(
        "/api/v1/integration/events",
        json={"event_type": "rfp.created", "idempotency_key": key},
        headers=[(b"Idempotency-Key", key.encode())],
    )
    assert published.status_code == 200, published.text


@pytest.mark.parametrize("header", [b"Webhook-Signing-Secret", b"Idempotency-Key"])
async def test_a_secret_or_idempotency_key_header_that_is_not_utf8_is_400_naming_it(
    gateway: Gateway, header: bytes
) -> None:
    served = len(gateway.fake.requests)
    response = await gateway.http.post(
        "/api/v1/integration/webhooks",
        json={"name": "orders", "url": "https://example.com/h"},
        headers=[(header, b"whsec_\xff\xfe-not-utf8")],
    )
    assert response.status_code == 400, response.text
    [violation] = violations_of(response)
    field = {b"Webhook-Signing-Secret": "signing_secret", b"Idempotency-Key": "idempotency_key"}[header]
    assert violation == {"field": field, "description": f"the {header.decode()} header is not UTF-8"}
    assert len(gateway.fake.requests) == served
