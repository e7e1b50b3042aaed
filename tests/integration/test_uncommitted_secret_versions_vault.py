"""On the real OpenBao and PostgreSQL: a change of a webhook's secret record whose row commit fails (its
lease taken by another change, its database connection killed) puts the record back and leaves no KV v2
version holding what it wrote. Nothing marks such a row for the workers' sweep, so before, the value that
never committed stayed readable in the version between the change's write and the put-back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from test_ended_overlaps_vault import versions_holding
from test_secrets import read_vault
from webhook_calls import create

from fakes import FakeNotifications
from support import Database
from webhookd.domain.errors import Aborted, Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook
from webhookd.services.webhooks import Webhooks
from webhookd.store.database import Database as Pool
from webhookd.store.webhooks import WebhookStore

POOL_NAME = "webhookd-uncommitted-test"
# What another change does once this one's lease lapsed: takes it.
TAKE_THE_LEASE = (
    "UPDATE webhooks SET secret_change_token = gen_random_uuid(),"
    " secret_change_until = clock_timestamp() + interval '1 minute' WHERE id = :id"
)
KILL_THE_POOLS_CONNECTION = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"


class FailingCommits(WebhookStore):
    """The real store, with `before_commit` run as a change's row update is about to be sent."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self.before_commit: Any = None

    async def set_credential(self, *args: Any, **kwargs: Any) -> Webhook:
        await self.before_commit()
        return await super().set_credential(*args, **kwargs)

    async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
        await self.before_commit()
        return await super().set_fingerprint(*args, **kwargs)


@pytest.fixture
async def store(backends) -> AsyncIterator[FailingCommits]:  # type: ignore[no-untyped-def]
    pool = Pool(backends.database_url, size=1, name=POOL_NAME)
    await pool.open()
    try:
        yield FailingCommits(pool)
    finally:
        await pool.close()


@pytest.fixture
async def webhooks(store: FailingCommits, backends, settings) -> AsyncIterator[Webhooks]:  # type: ignore[no-untyped-def]
    secrets = backends.secret_store(settings)
    service = Webhooks(store, secrets, FakeNotifications(), public_url=settings.public_url, allow_insecure_urls=True)
    try:
        yield service
    finally:
        await service.close()
        secrets.close()


async def test_a_credential_whose_lease_another_change_took_leaves_no_version_holding_it(
    caller, webhooks: Webhooks, store: FailingCommits, database: Database, backends, settings
) -> None:
    created = await create(caller)
    webhook_id, path = created.webhook.id, created.webhook.vault_path
    await caller.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=webhook_id, header_name="X-Api-Key", header_value="key-number-one")
    )

    async def lease_taken() -> None:
        await database.execute(TAKE_THE_LEASE, id=webhook_id)

    store.before_commit = lease_taken
    with pytest.raises(Aborted):
        await webhooks.set_credential(
            Scope(caller.tenant_id, person_id="person_1"),
            webhook_id,
            header_name="X-Api-Key",
            header_value="key-number-two",
        )

    assert await versions_holding(backends, settings, path, "key-number-two") == []
    assert (await read_vault(backends, settings, path))["credential_value"] == "key-number-one"


async def test_a_rotation_whose_database_connection_was_killed_leaves_no_version_holding_its_secret(
    caller, webhooks: Webhooks, store: FailingCommits, database: Database, backends, settings
) -> None:
    created = await create(caller)
    webhook_id, path = created.webhook.id, created.webhook.vault_path
    chosen = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="

    async def connection_killed() -> None:
        killed = await database.value(KILL_THE_POOLS_CONNECTION, name=POOL_NAME)
        assert killed

    store.before_commit = connection_killed
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(
            Scope(caller.tenant_id, person_id="person_1"), webhook_id, overlap=None, signing_secret=chosen
        )

    assert await versions_holding(backends, settings, path, chosen) == []
    assert (await read_vault(backends, settings, path))["current"] == created.signing_secret
