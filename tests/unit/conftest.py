"""Fakes for the core's unit tests: a fresh set per test, wired as app.py wires the real adapters."""

from __future__ import annotations

import pytest

from fakes import (
    FakeClock,
    FakeHistory,
    FakeLifecycle,
    FakeNotifications,
    FakeSecretOverlaps,
    FakeSecrets,
    FakeWebhooks,
)
from webhookd.config import Settings
from webhookd.services.ended_overlaps import EndedOverlaps
from webhookd.services.webhooks import Webhooks

PUBLIC_URL = "https://hooks.example"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def notifications() -> FakeNotifications:
    return FakeNotifications()


@pytest.fixture
def secret_store(clock: FakeClock) -> FakeSecrets:
    return FakeSecrets(clock)


@pytest.fixture
def webhook_store() -> FakeWebhooks:
    return FakeWebhooks()


@pytest.fixture
def history_store(webhook_store: FakeWebhooks) -> FakeHistory:
    return FakeHistory(webhook_store)


@pytest.fixture
def lifecycle(history_store: FakeHistory) -> FakeLifecycle:
    return FakeLifecycle(history_store)


@pytest.fixture
def webhooks(
    webhook_store: FakeWebhooks,
    secret_store: FakeSecrets,
    notifications: FakeNotifications,
    lifecycle: FakeLifecycle,
    clock: FakeClock,
) -> Webhooks:
    return Webhooks(
        webhook_store,
        secret_store,
        notifications,
        public_url=PUBLIC_URL,
        allow_insecure_urls=False,
        clock=clock,
    )


@pytest.fixture
def sweeper(webhook_store: FakeWebhooks, secret_store: FakeSecrets, clock: FakeClock) -> EndedOverlaps:
    """The workers' ended-overlap and replaced-version sweep (services/ended_overlaps.py) on the fakes."""
    webhook_store.clock = clock  # secret leases lapse by the test's clock
    batch = Settings().secret_sweep_batch
    return EndedOverlaps(webhook_store, FakeSecretOverlaps(webhook_store), secret_store, batch=batch, clock=clock)
