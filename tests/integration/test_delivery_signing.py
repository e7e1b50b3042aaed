"""What receivers check: signatures in both schemes, a webhook-id stable across retries, and secret rotation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2, struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from webhook_calls import create, field_violations, rpc_error

from receivers import failing_first
from support import make_caller


async def publish(caller, event_type: str = "rfp.created", **data) -> pb.PublishEventResponse:
    payload = struct_pb2.Struct()
    payload.update(data)
    return await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type, payload=payload))


def verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        StandardWebhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_webhook_id_is_stable_across_retries_and_each_attempt_verifies(
    caller, workers, receiver, database
) -> None:
    receiver.respond = failing_first(1)
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    published = await publish(caller, rfp_id=7)
    [delivery_id] = await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=published.event_id)
    await database.wait_for(
        "SELECT 1 FROM deliveries WHERE id = :d AND attempts = 1 AND lease_token IS NULL", bool, d=delivery_id.id
    )
    assert await database.make_due(delivery_id.id) == 1

    first, second = await receiver.wait_for(2)

    assert first.headers["webhook-id"] == second.headers["webhook-id"] == published.event_id
    assert first.body == second.body
    for request in (first, second):
        assert StandardWebhook(created.signing_secret).verify(request.body, request.headers)["data"] == {"rfp_id": 7}


async def test_hmac_sha256_scheme_signs_the_body_with_the_secret_strings_bytes(caller, workers, receiver) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.created"], signature_scheme="hmac-sha256")
    published = await publish(caller, rfp_id=8)

    [request] = await receiver.wait_for(1)

    # GitHub's rule: the key is the whole secret string (whsec_ prefix included) as UTF-8, not its decoded bytes.
    expected = hmac.new(created.signing_secret.encode("utf-8"), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature-256"] == f"sha256={expected}"
    assert request.headers["webhook-id"] == published.event_id
    assert "webhook-signature" not in request.headers
    assert json.loads(request.body)["data"] == {"rfp_id": 8}


async def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new_one(
    caller, workers, receiver
) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    original = created.signing_secret
    await publish(caller, n=1)
    [before] = await receiver.wait_for(1)
    assert len(before.headers["webhook-signature"].split()) == 1

    rotated = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id))
    assert rotated.signing_secret not in ("", original)
    assert rotated.webhook.secret_fingerprint != created.webhook.secret_fingerprint
    expires = rotated.previous_secret_expires_at.ToDatetime(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    # Workers keep a secret under its fingerprint, which the rotation changed: the next delivery reads the new one.
    await publish(caller, n=2)
    _, during = await receiver.wait_for(2)

    assert [entry[:3] for entry in during.headers["webhook-signature"].split()] == ["v1,", "v1,"]
    assert verifies(original, during.body, during.headers)
    assert verifies(rotated.signing_secret, during.body, during.headers)

    ended = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=0))
    )
    assert ended.webhook.secret_fingerprint not in (
        created.webhook.secret_fingerprint,
        rotated.webhook.secret_fingerprint,
    )
    await publish(caller, n=3)
    *_, after = await receiver.wait_for(3)

    assert len(after.headers["webhook-signature"].split()) == 1
    assert verifies(ended.signing_secret, after.body, after.headers)
    assert not verifies(rotated.signing_secret, after.body, after.headers)
    assert not verifies(original, after.body, after.headers)


async def test_a_second_rotation_within_the_overlap_still_signs_with_the_first_secret(
    caller, workers, receiver
) -> None:
    """The first rotation promised its old secret 24 hours: receivers still on it keep verifying."""
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    first = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id))
    second = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id))

    await publish(caller, n=1)
    [delivered] = await receiver.wait_for(1)

    assert len(delivered.headers["webhook-signature"].split()) == 3
    for secret in (created.signing_secret, first.signing_secret, second.signing_secret):
        assert verifies(secret, delivered.body, delivered.headers)


async def test_concurrent_rotations_each_answered_with_a_secret_all_sign_or_are_refused(
    caller, workers, receiver
) -> None:
    """Every rotation that answers OK handed its caller a secret that receivers will hold: it must sign
    (the newest as current, the others through their overlaps); one that lost a race must say so."""
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    request = pb.RotateWebhookSecretRequest(id=created.webhook.id)
    answers = await asyncio.gather(*(caller.RotateWebhookSecret(request) for _ in range(4)), return_exceptions=True)
    refused = [answer for answer in answers if isinstance(answer, grpc.aio.AioRpcError)]
    assert all(error.code() is grpc.StatusCode.ABORTED for error in refused), refused
    handed_out = [answer.signing_secret for answer in answers if not isinstance(answer, BaseException)]
    assert handed_out

    await publish(caller, n=1)
    [delivered] = await receiver.wait_for(1)

    for secret in (created.signing_secret, *handed_out):
        assert verifies(secret, delivered.body, delivered.headers)


async def test_rotating_back_to_an_earlier_secret_signs_with_the_one_it_replaces_during_the_overlap(
    caller, workers, receiver
) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    original = created.signing_secret
    await publish(caller, n=1)
    await receiver.wait_for(1)  # the workers now hold the original secret's record
    replaced = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=0))
    )
    await publish(caller, n=2)
    await receiver.wait_for(2)

    # Back to the original secret (a rollback): receivers that took the replacement keep it for the overlap.
    back = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.webhook.id, signing_secret=original)
    )
    assert back.webhook.secret_fingerprint == created.webhook.secret_fingerprint
    await publish(caller, n=3)
    *_, after = await receiver.wait_for(3)

    assert len(after.headers["webhook-signature"].split()) == 2
    assert verifies(original, after.body, after.headers)
    assert verifies(replaced.signing_secret, after.body, after.headers)


def github_verifies(secret: str, body: bytes, signature_header: str) -> bool:
    """GitHub's documented check: HMAC-SHA256 of the body with the secret, compared with the whole header."""
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature_header)


async def test_hmac_sha256_during_an_overlap_passes_githubs_check_with_the_new_secret(
    caller, workers, receiver
) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"], signature_scheme="hmac-sha256")
    rotated = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id))
    await publish(caller, n=1)

    [during] = await receiver.wait_for(1)

    assert github_verifies(rotated.signing_secret, during.body, during.headers["X-Hub-Signature-256"])
    # Receivers still on the old secret check the second header the same way.
    assert github_verifies(created.signing_secret, during.body, during.headers["X-Hub-Signature-256-Previous"])


@pytest.mark.parametrize("seconds", [7 * 86400 + 1, -1])
async def test_rotation_overlap_outside_zero_to_seven_days_is_invalid(caller, seconds: int) -> None:
    created = await create(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    error = await rpc_error(
        caller.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=seconds))
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "overlap" in field_violations(error)
    current = await caller.GetWebhook(pb.GetWebhookRequest(id=created.webhook.id))
    assert current.webhook.secret_fingerprint == created.webhook.secret_fingerprint


async def test_rotating_another_tenants_webhook_is_not_found(caller, channel) -> None:
    created = await create(caller, url="http://127.0.0.1:9/hook")
    other = make_caller(channel, subject="person_2")
    error = await rpc_error(other.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id)))
    assert error.code() is grpc.StatusCode.NOT_FOUND
