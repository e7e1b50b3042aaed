"""A webhook's delivery credential end to end: set over gRPC or REST, kept in Vault, sent by the
workers and by SendTestEvent to a receiver that checks it, shown redacted in the attempts and by
name only on the webhook, removed, and refused where it cannot apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import grpc
import pytest
from aiohttp import web
from cpod.integration.v1 import operations_pb2 as ops
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2
from history_rows import opened, webhook
from rest_calls import WEBHOOKS, rest_caller
from webhook_calls import create_webhook, field_violations, rpc_error

from support import make_caller
from webhookd.domain.errors import Aborted
from webhookd.domain.scope import Scope
from webhookd.store import migrate
from webhookd.store.webhooks import WebhookStore

TOKEN = "Bearer rcv-7f3c9a1e5b2d8c4f6a0e9b1c"


def checks_the_token(token: str = TOKEN):  # type: ignore[no-untyped-def]
    """A receiver's answer: 401 unless the request carries `token` in Authorization."""

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        if request.headers.get("Authorization") != token:
            return web.Response(status=401, text="who are you?")
        return web.Response(text="ok")

    return respond


async def set_credential(caller, webhook_id: str, name: str = "Authorization", value: str = TOKEN):  # type: ignore[no-untyped-def]
    request = pb.SetWebhookCredentialRequest(id=webhook_id, header_name=name, header_value=value)
    return (await caller.SetWebhookCredential(request)).webhook


async def publish(caller) -> str:  # type: ignore[no-untyped-def]
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json="{}"))
    return str(published.event_id)


async def delivered(database, event_id: str):  # type: ignore[no-untyped-def]
    [row] = await database.wait_for(
        "SELECT id, status FROM deliveries WHERE event_id = :e AND attempts >= 1 AND lease_token IS NULL",
        bool,
        e=event_id,
    )
    return row


async def test_the_workers_send_the_credential_and_the_attempts_show_it_redacted(
    caller, workers, receiver, database
) -> None:
    receiver.respond = checks_the_token()
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], headers={"X-Team": "orders"})

    credentialed = await set_credential(caller, hook.id)
    row = await delivered(database, await publish(caller))

    assert credentialed.credential_header == "Authorization" and credentialed.version == hook.version + 1
    [request] = await receiver.wait_for(1)
    assert request.headers["Authorization"] == TOKEN and request.headers["X-Team"] == "orders"
    assert row.status == "succeeded"
    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))
    [attempt] = got.attempts
    assert attempt.request_headers["Authorization"] == "[redacted]"
    assert "webhook-signature" in attempt.request_headers
    fetched = await caller.GetWebhook(pb.GetWebhookRequest(id=hook.id))
    assert fetched.webhook.credential_header == "Authorization"
    assert TOKEN not in str(fetched) and TOKEN not in str(got)


async def test_a_new_credential_is_sent_from_the_next_delivery_on_and_a_removed_one_no_more(
    caller, workers, receiver, database
) -> None:
    receiver.respond = checks_the_token("Bearer second")
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    await set_credential(caller, hook.id, value="Bearer first")
    first = await delivered(database, await publish(caller))

    await set_credential(caller, hook.id, value="Bearer second")
    second = await delivered(database, await publish(caller))
    removed = await set_credential(caller, hook.id, value="")
    third = await delivered(database, await publish(caller))

    sent = [request.headers.get("Authorization") for request in await receiver.wait_for(3)]
    assert sent == ["Bearer first", "Bearer second", None]
    assert removed.credential_header == ""
    statuses = [
        (await caller.GetDelivery(pb.GetDeliveryRequest(id=row.id))).attempts[0].http_status
        for row in (first, second, third)
    ]
    assert statuses == [401, 200, 401]


async def test_send_test_event_sends_the_credential(caller, receiver) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    await set_credential(caller, hook.id, name="X-Api-Key", value="Token abc123")
    receiver.respond = _api_key("Token abc123")

    sent = await caller.SendTestEvent(ops.SendTestEventRequest(webhook_id=hook.id))

    assert (sent.outcome, sent.http_status) == ("succeeded", 200)
    [request] = receiver.received
    assert request.headers["X-Api-Key"] == "Token abc123"
    got = await caller.GetDelivery(pb.GetDeliveryRequest(id=sent.delivery_id))
    assert got.attempts[0].request_headers["X-Api-Key"] == "[redacted]"


def _api_key(key: str):  # type: ignore[no-untyped-def]
    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=200 if request.headers.get("X-Api-Key") == key else 401, text="")

    return respond


async def test_a_rotation_keeps_the_credential(caller, workers, receiver, database) -> None:
    receiver.respond = checks_the_token()
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    await set_credential(caller, hook.id)

    await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=hook.id))
    row = await delivered(database, await publish(caller))

    assert row.status == "succeeded"
    [request] = await receiver.wait_for(1)
    assert request.headers["Authorization"] == TOKEN


async def test_what_cannot_carry_a_credential_is_refused(caller, channel) -> None:
    hook = await create_webhook(caller, event_types=["rfp.*"], headers={"X-Api-Key": "public"})
    inbound = await create_webhook(caller, name="in", url="", direction=2)

    bad = await rpc_error(
        caller.SetWebhookCredential(pb.SetWebhookCredentialRequest(id=hook.id, header_name="Host", header_value="x"))
    )
    assert bad.code() is grpc.StatusCode.INVALID_ARGUMENT and "header_name" in field_violations(bad)
    for name, value, field in [
        ("X-Api-Key", "secret", "header_name"),  # one of its static headers
        ("webhook-signature", "v1,x", "header_name"),
        ("Proxy-Authorization", "Basic x", "header_name"),
        ("Authorization", "Bearer a\r\nX-Injected: 1", "header_value"),
        ("Authorization", " Bearer padded", "header_value"),
        ("Authorization", "Bearer " + "x" * 4096, "header_value"),
    ]:
        error = await rpc_error(
            caller.SetWebhookCredential(
                pb.SetWebhookCredentialRequest(id=hook.id, header_name=name, header_value=value)
            )
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (name, value)
        assert field in field_violations(error), (name, error.details())
        assert value not in error.details()
    on_inbound = await rpc_error(set_credential(caller, inbound.id))
    assert on_inbound.code() is grpc.StatusCode.FAILED_PRECONDITION
    other = make_caller(channel, subject="person_2")
    theirs = await rpc_error(set_credential(other, hook.id))
    assert theirs.code() is grpc.StatusCode.NOT_FOUND


async def test_over_rest_the_credential_is_set_and_never_answered(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        created = (await rest.post(WEBHOOKS, json={"name": "h", "url": "https://example.test/hook"})).json()
        webhook_id = created["webhook"]["id"]
        answer = await rest.post(
            f"{WEBHOOKS}/{webhook_id}:setCredential", json={"header_name": "Authorization", "header_value": TOKEN}
        )
        fetched = await rest.get(f"{WEBHOOKS}/{webhook_id}")
        moved = await rest.patch(f"{WEBHOOKS}/{webhook_id}", json={"url": "https://elsewhere.example/hook"})
        nearby = await rest.patch(f"{WEBHOOKS}/{webhook_id}", json={"url": "https://example.test/hook/v2"})

    assert answer.status_code == 200, answer.text
    # Whoever may change the url could otherwise collect the credential: not to another origin.
    assert (moved.status_code, moved.json()["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert nearby.status_code == 200, nearby.text
    assert answer.json()["webhook"]["credential_header"] == "Authorization"
    assert fetched.json()["credential_header"] == "Authorization"
    assert TOKEN not in answer.text and TOKEN not in fetched.text


async def test_the_row_takes_a_credential_only_while_its_url_is_the_one_it_was_checked_against(own_database) -> None:
    """An update moving the url while the credential is being set (allowed: the row names none yet)
    makes the credential's row write Aborted, so the credential never follows the url elsewhere."""
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        store = WebhookStore(db)
        webhook_id = await webhook(db, "tnt_credential_origin")  # its url: http://127.0.0.1:9/hook
        scope = Scope("tnt_credential_origin")
        lease = uuid4()
        await store.take_secret_lease(scope, webhook_id, lease, lasting=timedelta(minutes=1))

        with pytest.raises(Aborted, match="url changed"):
            await store.set_credential(
                scope,
                webhook_id,
                "Authorization",
                "crd_1",
                url="https://elsewhere.example/h",
                lease=lease,
                person_id=None,
                now=now,
            )
        unchanged = await store.get(scope, webhook_id)
        credentialed = await store.set_credential(
            scope,
            webhook_id,
            "Authorization",
            "crd_1",
            url="http://127.0.0.1:9/hook",
            lease=lease,
            person_id=None,
            now=now,
        )

    assert (unchanged.credential_header, unchanged.version) == ("", 1)
    assert (credentialed.credential_header, credentialed.credential_id, credentialed.version) == (
        "Authorization",
        "crd_1",
        2,
    )


async def test_an_update_cannot_add_a_static_header_in_the_credentials_place(caller) -> None:
    """The credential is sent in its place, so the static header would be stored and shown but never sent."""
    hook = await create_webhook(caller, headers={"X-Team": "orders"})
    await set_credential(caller, hook.id, name="X-Api-Key", value="rcv-key")
    update = pb.UpdateWebhookRequest(
        webhook=wpb.Webhook(id=hook.id, headers={"X-Team": "orders", "x-api-key": "plain"}),
        update_mask=field_mask_pb2.FieldMask(paths=["headers"]),
    )
    error = await rpc_error(caller.UpdateWebhook(update))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    violations = field_violations(error)
    assert list(violations) == ['webhook.headers["x-api-key"]']
    assert "SetWebhookCredential" in violations['webhook.headers["x-api-key"]']
    fetched = await caller.GetWebhook(pb.GetWebhookRequest(id=hook.id))
    assert dict(fetched.webhook.headers) == {"X-Team": "orders"}
