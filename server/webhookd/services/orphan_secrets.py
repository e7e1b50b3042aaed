"""Removing signing secrets that no webhook owns.

CreateWebhook writes the secret to Vault before it inserts the row, and a Vault that was frozen may
carry a write out long after the call answered UNAVAILABLE; an insert whose outcome is unknown (the
database did not answer in time, the call was cancelled) keeps its secret, since the row may still
commit. Either way a secret can be left with no webhook row. Each round of this reconciler looks at
a bounded batch of the secrets under the prefix, tenant by tenant from where the last round stopped,
asks the database which have a row, and deletes the others once they are older than the grace period,
which outlasts any create still between its two writes. Rounds run in the workers' maintenance; the
database check takes a lock, so while one process reconciles the others skip the round.

A prefix is reconciled only by the deployment (the database) that claimed it: another deployment's
webhooks have no row in this database, so sharing a prefix would have each take the other's secrets
for orphans. The first round claims an unclaimed prefix; a prefix claimed by another deployment is
left alone, and every round says so.
"""

from __future__ import annotations

import bisect
import logging
from datetime import timedelta

from webhookd.domain.errors import Invalid
from webhookd.ports import Clock, SecretOwners, SecretStore, utc_now

log = logging.getLogger("webhookd.orphan_secrets")
DEFAULT_BATCH = 500


class OrphanSecrets:
    def __init__(
        self,
        secrets: SecretStore,
        owners: SecretOwners,
        *,
        grace: timedelta,
        batch: int = DEFAULT_BATCH,
        clock: Clock = utc_now,
    ) -> None:
        self._secrets = secrets
        self._owners = owners
        self._grace = grace
        self._batch = batch
        self._now = clock
        self._after_tenant = ""  # where the next round continues; "" is the start
        self._prefix_ours = False  # once claimed, a prefix stays this deployment's

    async def sweep(self) -> int:
        """One round; returns how many orphaned secrets it removed. Unavailable when Vault or the
        database cannot be reached (the next round tries again)."""
        if not await self._owns_prefix():
            return 0
        candidates = await self._next_batch()
        if not candidates:
            return 0
        owned = await self._owners.owned(candidates)
        if owned is None:
            return 0  # another process is reconciling
        removed = 0
        for tenant_id, webhook_id in candidates:
            if (tenant_id, webhook_id) in owned:
                continue
            try:
                path = await self._secrets.path_for(tenant_id, webhook_id)
            except Invalid:
                continue  # a name webhookd never writes: not ours to judge
            written = await self._secrets.written_at(path)
            if written is None or self._now() - written < self._grace:
                continue  # gone already, or a create may still be between its two writes
            await self._secrets.delete(path)
            removed += 1
            log.info("removed a secret no webhook owns", extra={"vault_path": path})
        return removed

    async def _owns_prefix(self) -> bool:
        if not self._prefix_ours:
            ours = await self._owners.deployment_id()
            claimed_by = await self._secrets.claim_prefix(ours)
            self._prefix_ours = claimed_by == ours
            if not self._prefix_ours:
                log.error(
                    "orphaned secrets are not removed: another deployment claimed this Vault prefix; give each"
                    " deployment a WEBHOOKD_VAULT_PREFIX of its own",
                    extra={"deployment_id": ours, "prefix_claimed_by": claimed_by},
                )
        return self._prefix_ours

    async def _next_batch(self) -> list[tuple[str, str]]:
        """Up to about `batch` (tenant, webhook) pairs with a secret, from the tenant after the last
        round's; a tenant's secrets are taken whole. Wraps round to the first tenant at the end."""
        tenants = await self._secrets.tenants()
        start = bisect.bisect_right(tenants, self._after_tenant) if self._after_tenant else 0
        batch: list[tuple[str, str]] = []
        for tenant_id in tenants[start:]:
            self._after_tenant = tenant_id
            batch += [(tenant_id, webhook_id) for webhook_id in await self._secrets.webhook_ids(tenant_id)]
            if len(batch) >= self._batch:
                return batch
        self._after_tenant = ""
        return batch
