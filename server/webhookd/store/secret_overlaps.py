"""The rows' marks of when their secret records next hold an ended overlap (migration 0021), for the
workers' sweep (services/ended_overlaps.py). Across tenants, like the other maintenance queries: the
sweep acts on each webhook it claims in that webhook's own scope."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa

from webhookd.domain.scope import Scope
from webhookd.store.database import Database
from webhookd.store.sql import compiled, param, scope_params, scoped
from webhookd.store.tables import webhooks

# The earliest due marks by the partial index webhooks_secret_overlap_ends; rows another process is
# claiming are skipped, and those claimed move out of every other round's reach until the claim ends.
_DUE = (
    sa.select(webhooks.c.id)
    .where(webhooks.c.secret_overlap_ends_at <= param("now", sa.DateTime(timezone=True)))
    .order_by(webhooks.c.secret_overlap_ends_at)
    .limit(param("limit", sa.Integer))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_CLAIM = compiled(
    webhooks.update()
    # ARRAY(...), not IN (...): the ids reach their rows by the primary key, where a join planned for an
    # unknown LIMIT read the whole table.
    .where(webhooks.c.id == sa.func.any(sa.func.array(_DUE)))
    .values(secret_overlap_ends_at=param("until", sa.DateTime(timezone=True)))
    .returning(webhooks.c.tenant_id, webhooks.c.id)
)
# Only while the sweep's lease still holds the record, which it releases: a change that took the lease
# after it lapsed marks the row itself when it commits.
_SETTLE = compiled(
    webhooks.update()
    .where(scoped(webhooks), webhooks.c.id == param("id"), webhooks.c.secret_change_token == param("token"))
    .values(
        secret_overlap_ends_at=param("ends_at", sa.DateTime(timezone=True)),
        secret_change_token=None,
        secret_change_until=None,
    )
)


class SecretOverlapStore:
    """ports.SecretOverlaps in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def claim_ended(self, now: datetime, *, limit: int, claim: timedelta) -> list[tuple[str, str]]:
        rows = await self._db.fetch_all(_CLAIM, {"now": now, "limit": limit, "until": now + claim})
        return [(row[0], row[1]) for row in rows]

    async def settle(self, scope: Scope, webhook_id: str, *, ends_at: datetime | None, lease: UUID) -> bool:
        values = scope_params(scope) | {"id": webhook_id, "ends_at": ends_at, "token": lease}
        return await self._db.execute(_SETTLE, values) == 1
