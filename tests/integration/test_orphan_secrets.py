"""The orphan-secret reconciler on the real Vault and database: a secret that a late Vault write left
with no webhook row goes once past its grace period; a webhook's own secret, deleted webhook or not,
stays. Each test has a database and a Vault prefix of its own, so no other test's secrets, and no other
process's reconciler (which would rightly make its round skip), come into its rounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from ulid import ULID
from webhook_calls import create_webhook

from support import AuthedStub, make_caller
from webhookd.app import Backends, open_service
from webhookd.config import Settings
from webhookd.secrets.vault import VaultSecretStore
from webhookd.services.orphan_secrets import OrphanSecrets
from webhookd.store import statistics
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.secret_owners import SecretOwners

GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Isolated:
    caller: AuthedStub
    secrets: VaultSecretStore
    owners: SecretOwners


@asynccontextmanager
async def isolated(settings: Settings, backends: Backends, own_database: str) -> AsyncIterator[Isolated]:
    """A service on `own_database` with a Vault prefix of its own, its secret store and the row check."""
    own = settings.with_overrides(vault_prefix=f"orphans-{str(ULID()).lower()}")
    service = await open_service(own, Backends(own_database, backends.vault_addr, backends.vault_token))
    secrets = backends.secret_store(own)
    database = Database(own_database, size=1)
    await database.open()
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            yield Isolated(make_caller(channel, subject="person_1"), secrets, SecretOwners(database))
    finally:
        await database.close()
        secrets.close()
        await service.stop(grace=1.0)


async def late_write(secrets: VaultSecretStore, tenant_id: str) -> str:
    """A secret as a Vault write carried out after its create answered leaves it: no row has it."""
    path = await secrets.path_for(tenant_id, "whk_01J00000000000000000000000")
    await secrets.write(path, {"current": "whsec_written_late"})
    return path


def past_the_grace() -> datetime:
    return datetime.now(UTC) + GRACE


async def test_a_secret_no_webhook_owns_goes_after_the_grace_period(settings, backends, own_database) -> None:
    async with isolated(settings, backends, own_database) as test:
        kept = await create_webhook(test.caller)
        deleted = await create_webhook(test.caller)
        await test.caller.DeleteWebhook(pb.DeleteWebhookRequest(id=deleted.id))
        orphan = await late_write(test.secrets, test.caller.tenant_id)

        too_soon = await OrphanSecrets(test.secrets, test.owners, grace=GRACE).sweep()
        later = past_the_grace()
        removed = await OrphanSecrets(test.secrets, test.owners, grace=GRACE, clock=lambda: later).sweep()

        assert (too_soon, removed) == (0, 1)
        assert await test.secrets.written_at(orphan) is None
        assert await test.secrets.written_at(kept.vault_path) is not None
        assert await test.secrets.written_at(deleted.vault_path) is not None


async def test_an_analyze_round_under_way_does_not_make_the_reconciler_skip(settings, backends, own_database) -> None:
    async with isolated(settings, backends, own_database) as test:
        orphan = await late_write(test.secrets, test.caller.tenant_id)
        later = past_the_grace()
        async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as analyzing:
            # What a worker holds while it ANALYZEs the queue's tables (store/statistics.py).
            await analyzing.execute(f"SELECT pg_advisory_lock({statistics.STATISTICS_LOCK_ID})")
            removed = await OrphanSecrets(test.secrets, test.owners, grace=GRACE, clock=lambda: later).sweep()

        assert removed == 1
        assert await test.secrets.written_at(orphan) is None


async def test_a_prefix_another_deployment_claimed_keeps_its_secrets(settings, backends, own_database) -> None:
    """Another deployment (another database) on the same Vault prefix: its webhooks' secrets have no row
    here, and must not be removed for that."""
    async with isolated(settings, backends, own_database) as test:
        assert await test.secrets.claim_prefix("dep_another_database") == "dep_another_database"
        theirs = await late_write(test.secrets, test.caller.tenant_id)
        later = past_the_grace()

        removed = await OrphanSecrets(test.secrets, test.owners, grace=GRACE, clock=lambda: later).sweep()

        assert removed == 0
        assert await test.secrets.written_at(theirs) is not None


async def test_a_deployment_claims_its_prefix_once_and_keeps_it(settings, backends, own_database) -> None:
    async with isolated(settings, backends, own_database) as test:
        ours = await test.owners.deployment_id()

        claimed = [await test.secrets.claim_prefix(ours), await test.secrets.claim_prefix("dep_another_database")]

        assert claimed == [ours, ours]
        assert ours == await test.owners.deployment_id()
