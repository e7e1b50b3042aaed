"""CreateWebhook with an idempotency key, over real gRPC and REST on PostgreSQL and OpenBao: a retry,
even one racing the first create, makes one webhook and leaves one secret in Vault."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from rest_calls import WEBHOOKS, rest_caller, violated_fields, webhook_body
from webhook_calls import HTTPS_URL, field_violations, rpc_error

from support import new_tenant_id
from webhookd.app import Service
from webhookd.domain.scope import Scope
from webhookd.store.webhooks import WebhookStore

RACERS = 8


def create_request(key: str, **fields: object) -> pb.CreateWebhookRequest:
    webhook = wpb.Webhook(name="orders", url=HTTPS_URL, event_types=["rfp.*"], **fields)  # type: ignore[arg-type]
    return pb.CreateWebhookRequest(webhook=webhook, idempotency_key=key)


async def test_a_retried_create_returns_the_first_webhook_and_secret(caller, service: Service) -> None:
    first = await caller.CreateWebhook(create_request("create-1"))
    retry = await caller.CreateWebhook(create_request("create-1"))

    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.webhook == first.webhook
    assert retry.signing_secret == first.signing_secret != ""
    listed = await caller.ListWebhooks(pb.ListWebhooksRequest(page_size=100))
    assert [webhook.id for webhook in listed.webhooks] == [first.webhook.id]
    assert await service.core.secrets.webhook_ids(caller.tenant_id) == [first.webhook.id]


async def test_creates_racing_with_one_key_make_one_webhook_and_leave_one_secret(caller, service: Service) -> None:
    created = await asyncio.gather(*(caller.CreateWebhook(create_request("raced")) for _ in range(RACERS)))

    assert len({response.webhook.id for response in created}) == 1
    assert len({response.signing_secret for response in created}) == 1
    assert sorted(response.duplicate for response in created) == [False] + [True] * (RACERS - 1)
    # The losers wrote a secret before their insert found the key taken, and removed it again.
    assert await service.core.secrets.webhook_ids(caller.tenant_id) == [created[0].webhook.id]


async def test_the_key_of_another_create_is_invalid_argument_naming_it(caller) -> None:
    await caller.CreateWebhook(create_request("reused"))

    error = await rpc_error(caller.CreateWebhook(create_request("reused", tags=["other"])))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a new webhook needs a new key" in field_violations(error)["idempotency_key"]


async def test_rest_takes_the_key_from_the_idempotency_key_header(gateway) -> None:
    async with rest_caller(gateway.url, new_tenant_id()) as rest:
        headers = {"Idempotency-Key": "rest-create-1"}
        first = await rest.post(WEBHOOKS, json=webhook_body(), headers=headers)
        retry = await rest.post(WEBHOOKS, json=webhook_body(), headers=headers)
        other = await rest.post(WEBHOOKS, json=webhook_body(name="other"), headers=headers)
        unkeyed = await rest.post(WEBHOOKS, json=webhook_body())

    assert (first.status_code, retry.status_code) == (200, 200), (first.text, retry.text)
    assert retry.json()["duplicate"] is True and first.json()["duplicate"] is False
    assert retry.json()["webhook"] == first.json()["webhook"]
    assert retry.json()["signing_secret"] == first.json()["signing_secret"]
    assert other.status_code == 400
    assert violated_fields(other) == {"idempotency_key"}
    assert unkeyed.json()["webhook"]["id"] != first.json()["webhook"]["id"]


async def test_a_key_past_its_window_is_taken_by_a_new_create(caller, database) -> None:
    first = await caller.CreateWebhook(create_request("daily"))
    moved = "UPDATE webhooks SET created_at = created_at - interval '25 hours' WHERE id = :id"
    await database.execute(moved, id=first.webhook.id)

    later = await caller.CreateWebhook(create_request("daily", tags=["new"]))
    again = await caller.CreateWebhook(create_request("daily", tags=["new"]))

    assert not later.duplicate and later.webhook.id != first.webhook.id
    assert again.duplicate and again.webhook.id == later.webhook.id


async def test_a_key_is_released_only_in_the_scope_that_holds_it(caller, service: Service) -> None:
    created = await caller.CreateWebhook(create_request("held"))
    store, held_by = WebhookStore(service.core.database), Scope(caller.tenant_id)

    await store.release_key(Scope(new_tenant_id()), created.webhook.id, "held")
    await store.release_key(Scope(caller.tenant_id, app_id="app_1"), created.webhook.id, "held")
    assert await store.created_with(held_by, "held") is not None

    await store.release_key(held_by, created.webhook.id, "held")
    assert await store.created_with(held_by, "held") is None


@pytest.mark.parametrize("key", ["k" * 256])
async def test_a_key_too_long_is_refused_over_rest(gateway, key: str) -> None:
    async with rest_caller(gateway.url, new_tenant_id()) as rest:
        response: httpx.Response = await rest.post(WEBHOOKS, json=webhook_body(), headers={"Idempotency-Key": key})

    assert response.status_code == 400
    assert violated_fields(response) == {"idempotency_key"}
