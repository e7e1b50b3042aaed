"""services/ended_overlaps.py on fakes: a secret whose overlap has ended leaves Vault's record at the
workers' next sweep, whether or not the webhook's secret changes again; one still overlapping stays."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from fakes import FakeClock, FakeSecrets, FakeWebhooks
from webhookd.domain.errors import Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import active_secrets
from webhookd.domain.webhooks import WebhookSpec
from webhookd.services.ended_overlaps import CLAIM, EndedOverlaps
from webhookd.services.webhooks import DEFAULT_SECRET_LEASE, Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
ORDERS = WebhookSpec(name="orders", url="https://receiver.example/hooks")


def holding(secrets: FakeSecrets, path: str, secret: str) -> list[int]:
    """The versions of the record at `path` the store keeps that hold `secret`."""
    return [version for version, data in secrets.history[path].items() if secret in data.values()]


async def test_a_secret_whose_overlap_ended_leaves_the_record_without_another_change(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    during = await sweeper.sweep()
    kept_during = sorted(secret_store.records[webhook.vault_path])
    clock.advance(timedelta(hours=1, seconds=1))

    after = await sweeper.sweep()

    assert (during, after) == (0, 1)
    assert kept_during == ["current", "previous", "previous_expires_at"]
    assert secret_store.records[webhook.vault_path] == {"current": rotation.signing_secret}
    assert webhook_store.overlap_ends[webhook.id] is None  # nothing left for a later round
    assert webhook.id not in webhook_store.secret_leases  # given back
    assert await sweeper.sweep() == 0


async def test_of_two_previous_secrets_only_the_one_whose_overlap_ended_goes(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    webhook, first_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    first = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)
    clock.advance(timedelta(hours=1))
    second = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    clock.advance(timedelta(hours=3))  # the second rotation's overlap is over, the first one's is not

    removed = await sweeper.sweep()

    record = secret_store.records[webhook.vault_path]
    assert removed == 1
    assert record == {
        "current": second.signing_secret,
        "previous": first_secret,
        "previous_expires_at": first.previous_secret_expires_at.isoformat(),
    }
    assert webhook_store.overlap_ends[webhook.id] == first.previous_secret_expires_at
    named = second.webhook.secret_fingerprint
    assert active_secrets(record, clock(), named) == [second.signing_secret, first_secret]


async def test_a_webhook_whose_secret_change_is_under_way_is_swept_in_a_later_round(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    """The sweep writes the record under the webhook's secret lease like any change: while another holds
    it the record is left as it is, and a round after the sweep's claim has lapsed takes it up."""
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    clock.advance(timedelta(hours=2))
    other = uuid4()
    await webhook_store.take_secret_lease(TENANT, webhook.id, other, lasting=DEFAULT_SECRET_LEASE)

    refused = await sweeper.sweep()
    record_while_held = sorted(secret_store.records[webhook.vault_path])
    await webhook_store.release_secret_lease(TENANT, webhook.id, other)
    too_soon = await sweeper.sweep()  # the refused round's claim still stands
    clock.advance(CLAIM)
    later = await sweeper.sweep()

    assert (refused, too_soon, later) == (0, 0, 1)
    assert record_while_held == ["current", "previous", "previous_expires_at"]
    assert secret_store.records[webhook.vault_path] == {"current": rotation.signing_secret}


async def test_a_rotation_ahead_of_its_row_keeps_the_rows_secret(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    """A record whose rotation the row never committed (Vault carried the write out after the call
    answered UNAVAILABLE) signs with the row's secret, held as its previous one: ended or not, it is
    the one in use and stays."""
    webhook, old_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    clock.advance(timedelta(hours=2))
    await sweeper.sweep()
    in_use, _ = await secret_store.read_versioned(webhook.vault_path)
    secret_store.answers_late = True
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    secret_store.answers_late = False
    ahead = dict(secret_store.records[webhook.vault_path])
    webhook_store.overlap_ends[webhook.id] = clock()  # as a backfill or an earlier rotation may leave it
    clock.advance(timedelta(hours=2))

    await sweeper.sweep()

    row = webhook_store.rows[webhook.id]
    assert secret_store.records[webhook.vault_path] == ahead
    assert active_secrets(ahead, clock(), row.secret_fingerprint) == [in_use["current"]]
    assert old_secret not in ahead.values()


async def test_no_earlier_version_of_the_record_keeps_the_ended_secret(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Vault's KV v2 keeps earlier versions of a record, readable as the current one is: the rotation's
    own, and the create's, where the old secret was current. Once its overlap has ended they go too."""
    webhook, old_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    held_during = holding(secret_store, webhook.vault_path, old_secret)
    clock.advance(timedelta(hours=1, seconds=1))

    await sweeper.sweep()

    assert held_during == [1, 2]
    assert holding(secret_store, webhook.vault_path, old_secret) == []
    history = secret_store.history[webhook.vault_path]
    assert list(history.values()) == [{"current": rotation.signing_secret}]


async def test_a_vault_that_refuses_to_destroy_earlier_versions_leaves_the_record_cleared(
    webhooks: Webhooks,
    sweeper: EndedOverlaps,
    secret_store: FakeSecrets,
    webhook_store: FakeWebhooks,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token whose policy lacks `secret/destroy/`: the earlier versions age out by themselves, and the
    round goes on with the record and the row's mark as without it."""

    async def refused(path: str, version: int) -> int:
        raise Unavailable("vault refused the call: permission denied (HTTP 403)")

    monkeypatch.setattr(secret_store, "destroy_before", refused)
    webhook, old_secret, _ = await webhooks.create(TENANT, ORDERS, None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    clock.advance(timedelta(hours=1, seconds=1))

    removed = await sweeper.sweep()

    assert removed == 1
    assert secret_store.records[webhook.vault_path] == {"current": rotation.signing_secret}
    assert webhook_store.overlap_ends[webhook.id] is None
    assert holding(secret_store, webhook.vault_path, old_secret) == [1, 2]


async def test_a_webhook_whose_record_is_gone_loses_its_mark_at_its_first_round(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    """A record removed outside the service leaves nothing to take out; a mark kept would be claimed
    again by every round after its claim ends, for ever."""
    webhook, _, _ = await webhooks.create(TENANT, ORDERS, None)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    await secret_store.delete(webhook.vault_path)
    clock.advance(timedelta(hours=2))

    removed = await sweeper.sweep()

    assert removed == 0
    assert webhook_store.overlap_ends[webhook.id] is None
    assert webhook.id not in webhook_store.secret_leases  # given back
