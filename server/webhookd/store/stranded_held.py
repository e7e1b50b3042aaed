"""The held round: held deliveries of webhooks that are no longer paused go out after all.

A delivery is held when its event is published while its webhook is paused, and the resume releases
(or discards) what is held. A publish re-reads its paused targets under a share lock, so it cannot
hold one after the resume that would miss it (store/events.py). An operational event cannot take
that lock: it is written in the transaction of another webhook's change (store/lifecycle.py), and two
paused webhooks subscribed to each other's events, resumed at once, would deadlock. So its delivery
may commit held just after its webhook's resume, with nothing left to release it. This round, run
periodically by the workers, releases such deliveries: those of webhooks that are live, enabled and
not paused, each webhook's in publish order, due now.

Whatever the resume asked for: one that discarded what was held discarded what it could see, and a
delivery held after it is an event published while the webhook was live again, which it is owed.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from webhookd.domain.statuses import DeliveryStatus
from webhookd.store.database import Connection, Database
from webhookd.store.sql import compiled

_HELD = DeliveryStatus.HELD.value
# The webhooks with held deliveries, one index probe (per week's partition) each, along the partial
# index deliveries_held (migration 0013) from one webhook id to the next: an idle round reads a few
# pages however many deliveries a long-paused webhook holds. Of those, the ones not paused any more
# have their held deliveries released, each due a microsecond after the one published before it
# (store/lifecycle.py _RELEASE_HELD), re-checked as held so a resume releasing them first wins.
_RELEASE_STRANDED = compiled(
    sa.text(
        f"""
WITH RECURSIVE holding AS (
    (SELECT webhook_id FROM deliveries WHERE status = '{_HELD}' ORDER BY webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.webhook_id FROM deliveries d
            WHERE d.status = '{_HELD}' AND d.webhook_id > h.webhook_id ORDER BY d.webhook_id LIMIT 1)
    FROM holding h WHERE h.webhook_id IS NOT NULL
), stranded AS (
    SELECT d.id, d.webhook_id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.created_at, d.id) AS n
    FROM webhooks w JOIN deliveries d ON d.webhook_id = w.id AND d.status = '{_HELD}'
    WHERE w.id = ANY(ARRAY(SELECT webhook_id FROM holding))
      AND w.paused_at IS NULL AND w.enabled AND w.deleted_at IS NULL
)
UPDATE deliveries d SET status = '{DeliveryStatus.PENDING.value}',
    next_attempt_at = now() + stranded.n * interval '1 microsecond', updated_at = :now
FROM stranded
WHERE d.id = ANY(ARRAY(SELECT id FROM stranded)) AND d.id = stranded.id AND d.status = '{_HELD}'
RETURNING d.webhook_id
"""
    )
)


async def release_stranded(database: Database, *, now: datetime) -> dict[str, int]:
    """Releases the held deliveries of webhooks that are live, enabled and not paused; how many, by webhook."""

    async def release(connection: Connection) -> dict[str, int]:
        released: dict[str, int] = {}
        for (webhook_id,) in await (await connection.execute(_RELEASE_STRANDED, {"now": now})).fetchall():
            released[webhook_id] = released.get(webhook_id, 0) + 1
        return released

    return await database.transaction(release)
