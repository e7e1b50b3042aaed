"""Replaced secrets and credentials leave Vault's version history, not only the record's current version:
every committed change of a webhook's secret record marks its row for the workers' sweep
(services/ended_overlaps.py), which destroys the record's earlier KV v2 versions (FakeSecrets keeps them
as KV v2 does) whether or not an overlap ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_ended_overlaps import holding

from fakes import FakeSecrets, FakeWebhooks
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook, WebhookSpec
from webhookd.services.ended_overlaps import EndedOverlaps
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
ORDERS = WebhookSpec(name="orders", url="https://receiver.example/hooks")


async def test_a_replaced_credential_leaves_every_version_at_the_next_sweep(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer first")
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer second")
    held_before = holding(secret_store, webhook.vault_path, "Bearer first")

    await sweeper.sweep()

    assert held_before == [2, 3]  # current in the first change's version, replaced_* in the second's
    assert holding(secret_store, webhook.vault_path, "Bearer first") == []
    assert holding(secret_store, webhook.vault_path, "Bearer second") != []  # the one in use stays


async def test_a_removed_credential_leaves_every_version_at_the_next_sweep(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets
) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer gone")
    await webhooks.set_credential(TENANT, webhook.id, header_name="", header_value="")

    await sweeper.sweep()

    assert holding(secret_store, webhook.vault_path, "Bearer gone") == []
    assert secret_store.records[webhook.vault_path] == {"current": secret}


async def test_a_credential_changed_during_an_overlap_leaves_every_version_before_the_overlap_ends(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    """The rotation's mark is a day away; the credential's change does not wait for it, and the sweep
    marks the row again for the overlap's end."""
    webhook, old_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer first")
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer second")

    await sweeper.sweep()

    assert holding(secret_store, webhook.vault_path, "Bearer first") == []
    assert holding(secret_store, webhook.vault_path, old_secret) != []  # still signing for its overlap
    assert webhook_store.overlap_ends[webhook.id] == rotation.previous_secret_expires_at


async def test_a_rotation_without_overlap_leaves_every_version_at_the_next_sweep(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    webhook, old_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=None)

    await sweeper.sweep()

    assert holding(secret_store, webhook.vault_path, old_secret) == []
    assert list(secret_store.history[webhook.vault_path].values()) == [{"current": rotation.signing_secret}]
    assert webhook_store.overlap_ends[webhook.id] is None


async def test_a_replaced_credential_vault_kept_after_the_commit_leaves_at_the_next_sweep(
    webhooks: Webhooks,
    sweeper: EndedOverlaps,
    secret_store: FakeSecrets,
    webhook_store: FakeWebhooks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vault stops answering once the row has committed: the replaced credential stays in the record
    under replaced_* keys, and the sweep takes it out once Vault answers again."""
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer first")
    committing = webhook_store.set_credential

    async def commit_then_lose_vault(*args: Any, **kwargs: Any) -> Webhook:
        written = await committing(*args, **kwargs)
        secret_store.reachable = False
        return written

    monkeypatch.setattr(webhook_store, "set_credential", commit_then_lose_vault)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer second")
    kept_in_record = "Bearer first" in secret_store.records[webhook.vault_path].values()
    secret_store.reachable = True

    await sweeper.sweep()

    assert kept_in_record
    assert holding(secret_store, webhook.vault_path, "Bearer first") == []
    assert "Bearer second" in secret_store.records[webhook.vault_path].values()
