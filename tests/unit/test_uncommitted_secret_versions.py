"""A change of a webhook's secret record whose row never commits puts the record back, and leaves no KV v2
version holding what it wrote: nothing marks its row for the workers' sweep, so nothing else would
destroy the version in between (FakeSecrets keeps versions as KV v2 does)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from test_ended_overlaps import holding

from fakes import FakeClock, FakeSecrets, FakeWebhooks
from webhookd.domain.errors import Aborted, Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook, WebhookSpec
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
ORDERS = WebhookSpec(name="orders", url="https://receiver.example/hooks")


async def test_a_credential_whose_commit_the_database_does_not_answer_leaves_no_version_holding_it(
    webhooks: Webhooks, secret_store: FakeSecrets, webhook_store: FakeWebhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer first")

    async def database_down(*args: Any, **kwargs: Any) -> Webhook:
        raise Unavailable("database unavailable: retry later")

    monkeypatch.setattr(webhook_store, "set_credential", database_down)
    with pytest.raises(Unavailable):
        await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer second")

    assert holding(secret_store, webhook.vault_path, "Bearer second") == []
    assert "Bearer first" in secret_store.records[webhook.vault_path].values()  # put back: the row names it


async def test_a_rotation_whose_lease_was_lost_before_its_commit_leaves_no_version_holding_its_secret(
    webhooks: Webhooks,
    secret_store: FakeSecrets,
    webhook_store: FakeWebhooks,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another change took the lease (this one's lapsed): the row refuses the commit, ABORTED."""
    webhook, secret, _ = await webhooks.create(TENANT, ORDERS, None)
    committing = webhook_store.set_fingerprint

    async def lease_taken_first(*args: Any, **kwargs: Any) -> Webhook:
        webhook_store.secret_leases[webhook.id] = (uuid4(), clock() + timedelta(minutes=1))
        return await committing(*args, **kwargs)

    monkeypatch.setattr(webhook_store, "set_fingerprint", lease_taken_first)
    with pytest.raises(Aborted):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    never_committed = [
        version
        for version, data in secret_store.history[webhook.vault_path].items()
        if not set(data.values()) <= set(record.values())
    ]
    assert record == {"current": secret}
    assert never_committed == []
