"""The webhook cache: newest version wins, notifications forget, entries expire on their clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from webhookd.domain.webhooks import SCHEMA_VERSION, Webhook, WebhookSpec
from webhookd.services.webhook_cache import WebhookCache

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def webhook(version: int = 1, webhook_id: str = "whk_1") -> Webhook:
    return Webhook(
        id=webhook_id,
        tenant_id="tnt_1",
        app_id=None,
        spec=WebhookSpec(name="w", url="https://example.com/h"),
        created_at=NOW,
        updated_at=NOW,
        created_by=None,
        updated_by=None,
        deleted_at=None,
        deleted_by=None,
        schema_version=SCHEMA_VERSION,
        vault_path="webhookd/tenants/tnt_1/webhooks/whk_1",
        secret_fingerprint="sha256:0",
        last_delivery_at=None,
        last_delivery_status=None,
        consecutive_failures=0,
        paused_at=None,
        version=version,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_kept_for_its_time_to_live_then_forgotten() -> None:
    clock = Clock()
    cache = WebhookCache(ttl_seconds=5.0, clock=clock)
    cache.put(webhook())

    clock.now = 4.9
    assert cache.get("whk_1") == webhook()
    clock.now = 5.0
    assert cache.get("whk_1") is None


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = WebhookCache()
    cache.put(webhook(version=3))
    cache.put(webhook(version=2))

    kept = cache.get("whk_1")
    assert kept is not None and kept.version == 3


def test_a_versioned_notification_forgets_only_older_copies() -> None:
    cache = WebhookCache()
    cache.put(webhook(version=3))

    cache.changed("whk_1:3")
    assert cache.get("whk_1") is not None
    cache.changed("whk_1:4")
    assert cache.get("whk_1") is None


def test_a_notification_without_a_version_forgets_the_webhook() -> None:
    cache = WebhookCache()
    cache.put(webhook(version=3))
    cache.put(webhook(webhook_id="whk_2"))

    cache.changed("whk_1")

    assert cache.get("whk_1") is None and cache.get("whk_2") is not None


def test_listening_restarted_forgets_everything() -> None:
    cache = WebhookCache()
    cache.put(webhook())
    cache.put(webhook(webhook_id="whk_2"))

    cache.changed(None)

    assert len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_least_recently_kept() -> None:
    cache = WebhookCache(capacity=2)
    for n in range(3):
        cache.put(dataclasses.replace(webhook(), id=f"whk_{n}"))

    assert len(cache) == 2 and cache.get("whk_0") is None


def test_a_read_that_overlapped_a_notification_of_its_webhook_is_not_kept() -> None:
    cache = WebhookCache()
    began = cache.generation
    cache.changed("whk_1:2")  # another process wrote version 2 while the read was on its way

    cache.put(webhook(version=1), read_at=began)

    assert cache.get("whk_1") is None


def test_a_read_that_overlapped_a_statistics_notification_is_not_kept() -> None:
    cache = WebhookCache()
    began = cache.generation
    cache.changed("whk_1")  # the recorder changed its statistics, at the same version

    cache.put(webhook(version=1), read_at=began)

    assert cache.get("whk_1") is None


def test_a_read_that_overlapped_listening_restarting_is_not_kept() -> None:
    cache = WebhookCache()
    began = cache.generation
    cache.changed(None)

    cache.put(webhook(), read_at=began)

    assert cache.get("whk_1") is None


def test_a_read_is_kept_when_only_other_webhooks_changed_meanwhile() -> None:
    cache = WebhookCache()
    began = cache.generation
    cache.changed("whk_2:5")

    cache.put(webhook(), read_at=began)

    assert cache.get("whk_1") == webhook()


def test_a_read_older_than_what_the_cache_still_remembers_is_not_kept() -> None:
    cache = WebhookCache(capacity=2)
    began = cache.generation
    cache.changed("whk_1")
    for n in range(2, 5):  # whk_1's notification is pushed out of what the cache remembers
        cache.changed(f"whk_{n}")

    cache.put(webhook(), read_at=began)

    assert cache.get("whk_1") is None
