"""On the real OpenBao and PostgreSQL: a replaced or removed credential, and a secret rotated out without
overlap, leave every version of the webhook's record that Vault keeps (KV v2 keeps earlier versions
readable) at the workers' next sweep, with no further change of the webhook's secrets."""

from __future__ import annotations

import asyncio

from cpod.integration.v1 import webhook_service_pb2 as pb
from test_ended_overlaps_vault import TRIES, versions_holding
from webhook_calls import create


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
