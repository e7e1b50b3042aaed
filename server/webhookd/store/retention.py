"""Removing old events, deliveries and attempts in small batches, each its own short transaction."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from webhookd.domain.statuses import DeliveryStatus

# Only one process sweeps at a time; the others skip the round.
RETENTION_LOCK_ID = 7_202_611_28

_BATCHES = (
    # Attempts are log lines: age alone decides.
    "DELETE FROM attempts WHERE seq IN (SELECT seq FROM attempts WHERE occurred_at < :cutoff LIMIT :batch)",
    # Finished deliveries only: a pending one (e.g. of a paused webhook) is still owed to its receiver.
    f"DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status <> '{DeliveryStatus.PENDING}'"
    " AND created_at < :cutoff LIMIT :batch)",
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < :cutoff"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT :batch)",
    # Inbound receipts (bodies up to the request limit each) age out like the rest of the history.
    "DELETE FROM inbound_events WHERE seq IN (SELECT seq FROM inbound_events WHERE received_at < :cutoff LIMIT :batch)",
)


async def sweep(engine: AsyncEngine, *, cutoff: datetime, batch: int = 1000, max_batches: int = 1000) -> int:
    """Deletes rows older than `cutoff`; returns how many. Stops after `max_batches` per table so one
    round stays bounded; the next round continues."""
    async with engine.connect() as lock_connection:
        locked = await lock_connection.scalar(sa.text(f"SELECT pg_try_advisory_lock({RETENTION_LOCK_ID})"))
        if not locked:
            return 0
        try:
            removed = 0
            for statement in _BATCHES:
                for _ in range(max_batches):
                    async with engine.begin() as connection:
                        result = await connection.execute(sa.text(statement), {"cutoff": cutoff, "batch": batch})
                    removed += result.rowcount
                    if result.rowcount < batch:
                        break
            return removed
        finally:
            await lock_connection.execute(sa.text(f"SELECT pg_advisory_unlock({RETENTION_LOCK_ID})"))
            await lock_connection.commit()
