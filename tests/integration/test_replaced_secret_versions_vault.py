"""On the real OpenBao and PostgreSQL: a replaced or removed credential, and a secret rotated out without
overlap, leave every version of the webhook's record that Vault keeps (KV v2 keeps earlier versions
readable) at the workers' next sweep, with no further change of the webhook's secrets."""

from __future__ import annotations

import asyncio

import hvac
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create

# Bounds of the waits below, in tries of 50 ms: 10 s in all.
TRIES = 200


async def versions_holding(backends, settings, path: str, value: str) -> list[int]:
    """The versions of the record at `path` that Vault still holds and that hold `value`."""
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
        if value in read["data"]["data"].values():
            held.append(int(version))
    return held


async def swept_until_gone(workers, backends, settings, path: str, value: str) -> list[int]:
    """Drives the sweep (the workers' own round may be the one that acts) until no version holds `value`
    or the tries run out; the versions holding it then."""
    held = await versions_holding(backends, settings, path, value)
    for _ in range(TRIES):
        if not held:
            break
        await workers.ended_overlaps.sweep()
        held = await versions_holding(backends, settings, path, value)
        if held:
            await asyncio.sleep(0.05)
    return held


async def test_a_replaced_and_a_removed_credential_leave_every_version_of_the_record(
    caller, workers, backends, settings
) -> None:
    created = await create(caller)
    path = created.webhook.vault_path
    await caller.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=created.webhook.id, header_name="X-Api-Key", header_value="key-number-one")
    )
    await caller.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=created.webhook.id, header_name="X-Api-Key", header_value="key-number-two")
    )
    first_held = await versions_holding(backends, settings, path, "key-number-one")
    first_left = await swept_until_gone(workers, backends, settings, path, "key-number-one")
    in_use = await versions_holding(backends, settings, path, "key-number-two")
    await caller.SetWebhookCredential(pb.SetWebhookCredentialRequest(id=created.webhook.id, header_name="X-Api-Key"))
    second_left = await swept_until_gone(workers, backends, settings, path, "key-number-two")

    assert first_held == [2, 3]  # current in the first change's version, replaced_* in the second's
    assert first_left == []
    assert in_use != []  # the credential in use stays
    assert second_left == []


async def test_a_secret_rotated_out_without_overlap_leaves_every_version_of_the_record(
    caller, workers, backends, settings
) -> None:
    created = await create(caller)
    path = created.webhook.vault_path
    await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap={"seconds": 0}))
    held = await versions_holding(backends, settings, path, created.signing_secret)

    left = await swept_until_gone(workers, backends, settings, path, created.signing_secret)

    assert held != []
    assert left == []
