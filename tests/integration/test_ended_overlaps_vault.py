"""A rotation's overlap that ends, on the real OpenBao and PostgreSQL: deliveries after it carry the new
secret's signature alone, and the workers' sweep removes the old secret from Vault's record and the
row's mark, with no further change of the webhook's secret."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import hvac
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2, struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook
from test_secrets import read_vault
from webhook_calls import create

from webhookd.domain.fingerprints import fingerprint

# Bounds of the waits below, in tries of 50 ms: 10 s in all.
TRIES = 200


async def versions_holding(backends, settings, path: str, secret: str) -> list[int]:
    """The versions of the record at `path` that Vault still holds and that hold `secret`."""
    client = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    kv = client.secrets.kv.v2
    metadata = await asyncio.to_thread(kv.read_secret_metadata, path=path, mount_point=settings.vault_mount)
    held = []
    for version, state in sorted(metadata["data"]["versions"].items(), key=lambda item: int(item[0])):
        if state["destroyed"]:
            continue
        read = await asyncio.to_thread(
            kv.read_secret_version,
            path=path,
            mount_point=settings.vault_mount,
            version=int(version),
            raise_on_deleted_version=True,
        )
        if secret in read["data"]["data"].values():
            held.append(int(version))
    return held


async def overlap_mark(database, webhook_id: str) -> datetime | None:
    return await database.value("SELECT secret_overlap_ends_at FROM webhooks WHERE id = :id", id=webhook_id)


async def test_after_the_overlap_one_signature_and_the_sweep_removes_the_old_secret(
    caller, workers, receiver, backends, settings, database
) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"])
    rotated = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=1))
    )
    ends = rotated.previous_secret_expires_at.ToDatetime(tzinfo=UTC)
    during = sorted(await read_vault(backends, settings, created.webhook.vault_path))
    held_during = await versions_holding(backends, settings, created.webhook.vault_path, created.signing_secret)
    marked = await overlap_mark(database, created.webhook.id)
    for _ in range(TRIES):  # until the overlap has ended by this process's clock (the workers' too)
        if datetime.now(UTC) > ends:
            break
        await asyncio.sleep(0.05)
    payload = struct_pb2.Struct()
    payload.update({"n": 1})
    await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload))
    [delivered] = await receiver.wait_for(1)

    # Driven here rather than waiting for the workers' own round; either may be the one that removes it.
    for _ in range(TRIES):
        await workers.ended_overlaps.sweep()
        record = await read_vault(backends, settings, created.webhook.vault_path)
        if "previous" not in record:
            break
        await asyncio.sleep(0.05)

    assert during == ["current", "previous", "previous_expires_at"]
    # The rotation's commit marked its row due for the sweep (then at the overlap's end, or claimed by a
    # round of the workers meanwhile): marked in any case.
    assert marked is not None
    assert len(delivered.headers["webhook-signature"].split()) == 1
    StandardWebhook(rotated.signing_secret).verify(delivered.body, dict(delivered.headers))
    # Compared by key and fingerprint: a failing assertion shows no secret.
    assert sorted(record) == ["current"]
    assert fingerprint(record["current"]) == rotated.webhook.secret_fingerprint
    assert await overlap_mark(database, created.webhook.id) is None
    # KV v2 kept the create's version (the old secret current) and the rotation's: destroyed as well.
    assert held_during == [1, 2]
    assert await versions_holding(backends, settings, created.webhook.vault_path, created.signing_secret) == []
