"""Concurrent changes of a webhook's secret record from two service processes: every call that
answers OK handed out what the deliveries then carry.

Each race runs on a webhook of its own (several at once, one receiver path each), its calls split
between the session's service and a second one on the same PostgreSQL and OpenBao: its own pools, its
own Vault client, its own cache, as another `webhookd serve` process has. One event then reaches every
webhook, and each delivery is checked with the official `standardwebhooks` library (rotations) or for
the credential header (credentials).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from history_rows import opened
from history_rows import webhook as webhook_row
from rest_calls import WEBHOOKS as WEBHOOKS_ROUTE
from rest_calls import error_of, reason_of, rest_caller
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from webhook_calls import create, error_info

from support import AuthedStub, make_caller
from webhookd.app import open_service
from webhookd.domain.errors import Aborted
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import TOO_MANY_SIGNING_SECRETS
from webhookd.store import migrate
from webhookd.store.webhooks import WebhookStore

WEBHOOKS = 20  # races, one webhook each, at once: before the fix each of 4 runs lost secrets and credentials
# Concurrent RotateWebhookSecret calls on one webhook: more than the record keeps signing beside the
# current secret (MAX_PREVIOUS), so a race that lets most through meets that bound too.
ROTATIONS = 6
CREDENTIALS = 12  # concurrent SetWebhookCredential calls on one webhook


@pytest.fixture
async def other_process(settings, backends, caller) -> AsyncIterator[AuthedStub]:  # type: ignore[no-untyped-def]
    """A second service on the same backends, called as `caller`'s tenant and person."""
    service = await open_service(settings, backends)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            yield make_caller(channel, caller.tenant_id, subject="person_1")
    finally:
        await service.stop(grace=1.0)


def verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        StandardWebhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def webhooks_each_with_a_path(caller, receiver) -> list[pb.CreateWebhookResponse]:  # type: ignore[no-untyped-def]
    return list(
        await asyncio.gather(
            *(create(caller, url=f"{receiver.url}/{n}", event_types=["race.*"]) for n in range(WEBHOOKS))
        )
    )


async def one_delivery_each(caller, receiver) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    """Publishes one event and returns what each webhook's path received (by its index, as text)."""
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="race.run", payload_json="{}"))
    assert published.deliveries_queued == WEBHOOKS
    received = await receiver.wait_for(WEBHOOKS, within=30.0)
    return {r.path.rsplit("/", 1)[1]: {"headers": r.headers, "body": r.body} for r in received}


def refused_only_as_aborted(answers: list[object], *, or_as_full: bool = False) -> None:
    """Every refusal is a change under way (ABORTED) or, when `or_as_full`, a rotation past the
    secrets the record keeps signing (FAILED_PRECONDITION): never a change made and then lost."""
    refused = [answer for answer in answers if isinstance(answer, grpc.aio.AioRpcError)]
    assert all(
        error.code() is grpc.StatusCode.ABORTED
        or (
            or_as_full
            and error.code() is grpc.StatusCode.FAILED_PRECONDITION
            and error_info(error).reason == TOO_MANY_SIGNING_SECRETS
        )
        for error in refused
    ), [e.details() for e in refused]


async def test_concurrent_rotations_from_two_processes_hand_out_only_secrets_that_sign(
    caller, other_process, workers, receiver
) -> None:
    created = await webhooks_each_with_a_path(caller, receiver)

    async def race(webhook_id: str) -> list[object]:
        request = pb.RotateWebhookSecretRequest(id=webhook_id)
        callers = [caller, other_process] * (ROTATIONS // 2)
        return list(await asyncio.gather(*(c.RotateWebhookSecret(request) for c in callers), return_exceptions=True))

    races = await asyncio.gather(*(race(webhook.webhook.id) for webhook in created))
    delivered = await one_delivery_each(caller, receiver)

    handed_out = never_signing = 0
    for n, (webhook, answers) in enumerate(zip(created, races, strict=True)):
        refused_only_as_aborted(answers, or_as_full=True)
        secrets = [answer.signing_secret for answer in answers if isinstance(answer, pb.RotateWebhookSecretResponse)]
        assert secrets, f"race {n}: every rotation was refused"
        delivery = delivered[str(n)]
        for secret in (webhook.signing_secret, *secrets):
            handed_out += 1
            never_signing += not verifies(secret, delivery["body"], delivery["headers"])  # type: ignore[arg-type]
    assert never_signing == 0, f"{never_signing} of {handed_out} secrets handed out did not verify the delivery"


async def test_concurrent_credentials_from_two_processes_leave_one_that_every_delivery_carries(
    caller, other_process, workers, receiver
) -> None:
    created = await webhooks_each_with_a_path(caller, receiver)

    async def race(webhook_id: str) -> list[object]:
        calls = [
            (caller, other_process)[n % 2].SetWebhookCredential(
                pb.SetWebhookCredentialRequest(id=webhook_id, header_name="Authorization", header_value=f"Bearer t-{n}")
            )
            for n in range(CREDENTIALS)
        ]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    races = await asyncio.gather(*(race(webhook.webhook.id) for webhook in created))
    delivered = await one_delivery_each(caller, receiver)

    without = []
    for n, answers in enumerate(races):
        refused_only_as_aborted(answers)
        answered_ok = {
            f"Bearer t-{i}" for i, answer in enumerate(answers) if isinstance(answer, pb.SetWebhookCredentialResponse)
        }
        assert answered_ok, f"race {n}: every call was refused"
        headers = delivered[str(n)]["headers"]
        if headers.get("Authorization") not in answered_ok:  # type: ignore[attr-defined]
            without.append(n)
    assert not without, f"{len(without)} of {WEBHOOKS} webhooks' deliveries carried no credential set: {without}"


async def test_a_lease_left_by_a_process_that_died_refuses_changes_until_it_lapses(caller, database, gateway) -> None:
    """The lease a dead process held is no one's to release: a change meanwhile is ABORTED (HTTP 409)
    with a reason of its own and a message saying to retry, so a client tells it from a lost race
    (VERSION_MISMATCH: re-read first), and goes ahead once the lease lapsed."""
    created = await create(caller)
    webhook_id = created.webhook.id
    await database.execute(
        "UPDATE webhooks SET secret_change_token = gen_random_uuid(),"
        " secret_change_until = clock_timestamp() + interval '1 hour' WHERE id = :id",
        id=webhook_id,
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id))
    async with rest_caller(gateway.url, caller.tenant_id) as rest:
        refused_over_rest = await rest.post(
            f"{WEBHOOKS_ROUTE}/{webhook_id}:setCredential", json={"header_name": "X-Api-Key", "header_value": "k"}
        )
    assert refused.value.code() is grpc.StatusCode.ABORTED
    assert error_info(refused.value).reason == "SECRET_CHANGE_IN_PROGRESS"
    assert "being changed by another call: retry" in str(refused.value.details())
    assert refused_over_rest.status_code == 409
    assert error_of(refused_over_rest)["status"] == "ABORTED"
    assert reason_of(refused_over_rest) == "SECRET_CHANGE_IN_PROGRESS"
    await database.execute(  # what the passing of the lease's length does
        "UPDATE webhooks SET secret_change_until = clock_timestamp() - interval '1 second' WHERE id = :id",
        id=webhook_id,
    )

    rotated = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id))
    assert rotated.webhook.secret_fingerprint != created.webhook.secret_fingerprint
    [lease] = await database.rows(
        "SELECT secret_change_token, secret_change_until FROM webhooks WHERE id = :id", id=webhook_id
    )
    assert dict(lease) == {"secret_change_token": None, "secret_change_until": None}  # released by the commit


async def test_a_holder_whose_lease_lapsed_and_was_taken_cannot_commit(own_database) -> None:
    await migrate.upgrade(own_database)
    scope = Scope("tnt_secret_lease")
    async with opened(own_database) as db:
        store = WebhookStore(db)
        webhook_id = await webhook_row(db, scope.tenant_id)
        before = await store.get(scope, webhook_id)
        slow, next_one = uuid4(), uuid4()
        await store.take_secret_lease(scope, webhook_id, slow, lasting=timedelta(hours=1))
        with pytest.raises(Aborted, match="being changed by another call"):
            await store.take_secret_lease(scope, webhook_id, next_one, lasting=timedelta(hours=1))
        await db.execute(
            "UPDATE webhooks SET secret_change_until = clock_timestamp() - interval '1 second' WHERE id = %(id)s",
            {"id": webhook_id},
        )
        await store.take_secret_lease(scope, webhook_id, next_one, lasting=timedelta(hours=1))

        def rotate(lease: UUID, to: str):  # type: ignore[no-untyped-def]
            return store.set_fingerprint(
                scope,
                webhook_id,
                to,
                replacing=before.secret_fingerprint,
                lease=lease,
                person_id=None,
                now=datetime.now(UTC),
            )

        with pytest.raises(Aborted, match="lease on them lapsed"):
            await rotate(slow, "fp-slow")
        committed = await rotate(next_one, "fp-next")
        await store.release_secret_lease(scope, webhook_id, slow)  # the slow one gives up: a no-op now
        taken_again = await store.take_secret_lease(scope, webhook_id, uuid4(), lasting=timedelta(hours=1))

    assert committed.secret_fingerprint == taken_again.secret_fingerprint == "fp-next"
    assert committed.version == before.version + 1
