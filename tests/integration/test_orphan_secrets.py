"""The orphan-secret reconciler on the real Vault and database: a secret that a late Vault write left
with no webhook row goes once past its grace period; a webhook's own secret, deleted webhook or not,
stays. A Vault prefix of the test's own keeps other tests' secrets out of its rounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb
from ulid import ULID
from webhook_calls import create_webhook

from support import make_caller
from webhookd.app import Backends, open_service
from webhookd.services.orphan_secrets import OrphanSecrets
from webhookd.store.database import Database
from webhookd.store.secret_owners import SecretOwners

GRACE = timedelta(minutes=15)


async def test_a_secret_no_webhook_owns_goes_after_the_grace_period(settings, backends: Backends) -> None:
    own_prefix = settings.with_overrides(vault_prefix=f"orphans-{str(ULID()).lower()}")
    service = await open_service(own_prefix, backends)
    secrets = backends.secret_store(own_prefix)
    database = Database(backends.database_url, size=1)
    await database.open()
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            caller = make_caller(channel, subject="person_1")
            kept = await create_webhook(caller)
            deleted = await create_webhook(caller)
            await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=deleted.id))
        orphan = await secrets.path_for(caller.tenant_id, "whk_01J00000000000000000000000")
        await secrets.write(orphan, {"current": "whsec_written_late"})
        owners = SecretOwners(database)

        too_soon = await OrphanSecrets(secrets, owners, grace=GRACE).sweep()
        later = datetime.now(UTC) + GRACE
        removed = await OrphanSecrets(secrets, owners, grace=GRACE, clock=lambda: later).sweep()

        assert (too_soon, removed) == (0, 1)
        assert await secrets.written_at(orphan) is None
        assert await secrets.written_at(kept.vault_path) is not None
        assert await secrets.written_at(deleted.vault_path) is not None
    finally:
        await database.close()
        secrets.close()
        await service.stop(grace=1.0)
