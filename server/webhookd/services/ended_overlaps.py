"""Removing from Vault the previous secrets whose rotation overlap has ended, and every earlier version of
a changed record.

A rotation keeps the secret it replaced in the webhook's record for the overlap the caller chose. Once
that ends the secret signs and verifies nothing (secret_rotation.active_secrets leaves it out at once),
but it stayed stored until the webhook's next secret change, which may never come: a secret kept for
nothing is one more to leak. So does what any change replaced (a credential, a secret rotated out without
overlap) in the record's earlier versions, which Vault's KV v2 keeps readable; so the commit of every
change of the record marks its row due at once (store/webhooks.py). Each round of this sweep, in the
workers' maintenance, claims a bounded batch of webhooks whose row is due (migration 0021; rows other
processes are claiming are skipped), and for each, under the webhook's secret lease like any change of
its record, writes the record without what the row no longer uses (`without_retired`; the change itself
answers once committed, leaving it here) over just the version it read (Vault's check-and-set), then
marks the row with the next overlap's end and releases the lease in one write. Then it destroys the
record's earlier versions.

Nothing is left half-written: the row names only the current secret (its fingerprint), which stays, as
does the row's secret while the record holds a rotation the row has not committed (`without_ended`), and
the credential it names (a replaced one goes only once the row names another); so the record written
never lacks what the row points at. The mark is written after Vault: a round that
stops between the two leaves a mark due, and the next look finds nothing more to take out. A webhook
whose lease another change holds is left to a round after the claim ends (or the change's commit marks
it anew).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from webhookd.domain.errors import Aborted, NotFound, Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import next_overlap_end, without_retired
from webhookd.ports import Clock, SecretOverlaps, SecretStore, WebhookRepository, utc_now
from webhookd.services.secret_leases import SecretLeases
from webhookd.services.webhooks import DEFAULT_SECRET_LEASE

log = logging.getLogger("webhookd.ended_overlaps")
# How long a round's claim keeps other processes' rounds off a webhook: past a round's Vault calls (each
# bounded by the client's timeout) for a batch, and short enough that a webhook a dead process claimed
# is swept soon after.
CLAIM = timedelta(minutes=5)


class EndedOverlaps:
    def __init__(
        self,
        webhooks: WebhookRepository,
        overlaps: SecretOverlaps,
        secrets: SecretStore,
        *,
        batch: int,
        lease: timedelta = DEFAULT_SECRET_LEASE,
        clock: Clock = utc_now,
    ) -> None:
        self._overlaps = overlaps
        self._secrets = secrets
        self._leases = SecretLeases(webhooks, lasting=lease)
        self._batch = batch
        self._now = clock

    async def sweep(self) -> int:
        """One round; returns how many records it took retired secrets out of. Unavailable when Vault or the
        database cannot be reached (what the round claimed is taken up again once its claim ends)."""
        now = self._now()
        removed = 0
        for tenant_id, webhook_id in await self._overlaps.claim_ended(now, limit=self._batch, claim=CLAIM):
            try:
                removed += await self._take_out_ended(Scope(tenant_id), webhook_id, now)
            except (Aborted, NotFound):
                continue  # another change holds the record, or wrote it meanwhile: a later round looks again
        return removed

    async def _take_out_ended(self, scope: Scope, webhook_id: str, now: datetime) -> int:
        async with self._leases.held(scope, webhook_id) as lease:
            named = lease.webhook.secret_fingerprint
            path = lease.webhook.vault_path
            try:
                record, version = await self._secrets.read_versioned(path)
            except NotFound:
                # Removed outside the service: nothing to take out, and a mark kept would be claimed by
                # every round after this one's claim ends, for ever.
                lease.committed = await self._overlaps.settle(scope, webhook_id, ends_at=None, lease=lease.token)
                return 0
            kept = without_retired(record, now, lease.webhook)
            if kept is not record:
                await self._secrets.write(path, kept, replacing=version)
                version += 1
                log.info("removed retired secrets", extra={"webhook_id": webhook_id})
            lease.committed = await self._overlaps.settle(
                scope, webhook_id, ends_at=next_overlap_end(kept, named), lease=lease.token
            )
        await self._destroy_earlier(webhook_id, path, version)
        return 0 if kept is record else 1

    async def _destroy_earlier(self, webhook_id: str, path: str, version: int) -> None:
        """KV v2 keeps the record's earlier versions, readable like the current one: a change's, and the
        one before it where what it replaced was current. Each holds only secrets the record at `version`
        holds still or that nothing uses any more, and nothing reads them. Not under the lease: a change
        since writes only later versions."""
        try:
            await self._secrets.destroy_before(path, version)
        except Unavailable as error:
            # Removed from the record all the same; the earlier versions age out (the mount's max_versions).
            log.warning(
                "earlier versions of a secret record were not destroyed",
                extra={"webhook_id": webhook_id, "reason": error.message},
            )

    async def close(self) -> None:
        """Stops giving back, in the background, leases the database did not answer for."""
        await self._leases.close()
