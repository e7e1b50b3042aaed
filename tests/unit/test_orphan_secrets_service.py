"""The orphan-secret reconciler on the fakes: what it removes (a secret with no webhook row, once past the
grace period), what it keeps, and how its rounds stay bounded."""

from __future__ import annotations

from datetime import timedelta

from fakes import FakeClock, FakeSecretOwners, FakeSecrets, FakeWebhooks
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import WebhookSpec
from webhookd.services.orphan_secrets import OrphanSecrets
from webhookd.services.webhooks import Webhooks

GRACE = timedelta(minutes=15)
TENANT = Scope("tnt_a", person_id="person_1")


def reconciler(secrets: FakeSecrets, owners: FakeSecretOwners, clock: FakeClock, *, batch: int = 500) -> OrphanSecrets:
    return OrphanSecrets(secrets, owners, grace=GRACE, batch=batch, clock=clock)


async def orphan(secrets: FakeSecrets, tenant_id: str, webhook_id: str) -> str:
    """A secret written as a late Vault write leaves it: no webhook row has it."""
    path = await secrets.path_for(tenant_id, webhook_id)
    await secrets.write(path, {"current": "whsec_late"})
    return path


async def test_a_secret_without_a_row_goes_once_past_the_grace_period(
    secret_store: FakeSecrets, webhook_store: FakeWebhooks, webhooks: Webhooks, clock: FakeClock
) -> None:
    owners = FakeSecretOwners(webhook_store)
    owned, _, _ = await webhooks.create(TENANT, WebhookSpec(name="kept", url="https://receiver.example/a"), None)
    deleted, _, _ = await webhooks.create(TENANT, WebhookSpec(name="deleted", url="https://receiver.example/b"), None)
    await webhooks.delete(TENANT, deleted.id, expected_version=None)
    old_orphan = await orphan(secret_store, "tnt_a", "whk_old")
    clock.advance(GRACE)
    young_orphan = await orphan(secret_store, "tnt_a", "whk_young")  # a create may be between its writes

    removed = await reconciler(secret_store, owners, clock).sweep()

    assert removed == 1
    assert set(secret_store.records) == {owned.vault_path, deleted.vault_path, young_orphan}
    assert old_orphan not in secret_store.records


async def test_nothing_is_removed_while_another_process_reconciles(
    secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    owners = FakeSecretOwners(webhook_store)
    owners.locked = True
    path = await orphan(secret_store, "tnt_a", "whk_1")
    clock.advance(GRACE)

    assert await reconciler(secret_store, owners, clock).sweep() == 0
    assert path in secret_store.records


async def test_rounds_take_bounded_batches_and_continue_where_the_last_stopped(
    secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    owners = FakeSecretOwners(webhook_store)
    for tenant in ("tnt_a", "tnt_b", "tnt_c"):
        await orphan(secret_store, tenant, "whk_1")
        await orphan(secret_store, tenant, "whk_2")
    clock.advance(GRACE)
    rounds = reconciler(secret_store, owners, clock, batch=3)

    first = await rounds.sweep()
    second = await rounds.sweep()

    assert (first, second) == (4, 2)  # whole tenants: a and b, then c
    assert [sorted({tenant for tenant, _ in batch}) for batch in owners.checked] == [["tnt_a", "tnt_b"], ["tnt_c"]]
    assert secret_store.records == {}


async def test_a_prefix_another_deployment_claimed_is_left_alone(
    secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    """Two deployments sharing a Vault prefix: neither database knows the other's webhooks, so each
    would take the other's secrets for orphans and every one of its webhooks would stop signing."""
    owners = FakeSecretOwners(webhook_store)
    await secret_store.claim_prefix("dep_other")
    path = await orphan(secret_store, "tnt_a", "whk_1")
    clock.advance(GRACE)

    assert await reconciler(secret_store, owners, clock).sweep() == 0
    assert path in secret_store.records


async def test_the_first_round_claims_an_unclaimed_prefix_for_its_deployment(
    secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    owners = FakeSecretOwners(webhook_store)
    await orphan(secret_store, "tnt_a", "whk_1")
    clock.advance(GRACE)

    removed = await reconciler(secret_store, owners, clock).sweep()

    assert removed == 1
    assert await secret_store.claim_prefix("dep_other") == await owners.deployment_id()
