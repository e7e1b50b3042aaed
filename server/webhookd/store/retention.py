"""Removing old events, deliveries and attempts in small batches, each its own short transaction."""

from __future__ import annotations

from datetime import datetime

from webhookd.domain.statuses import DeliveryStatus
from webhookd.store.database import Connection, Database

# Only one process sweeps at a time; the others skip the round.
RETENTION_LOCK_ID = 7_202_611_28
_LOCK = f"SELECT pg_try_advisory_xact_lock({RETENTION_LOCK_ID})"

_BATCHES = (
    # Attempts are log lines: age alone decides.
    "DELETE FROM attempts WHERE seq IN (SELECT seq FROM attempts WHERE occurred_at < %(cutoff)s LIMIT %(batch)s)",
    # Finished deliveries only: a pending one (e.g. of a paused webhook) is still owed to its receiver.
    f"DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status <> '{DeliveryStatus.PENDING}'"
    " AND created_at < %(cutoff)s LIMIT %(batch)s)",
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < %(cutoff)s"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT %(batch)s)",
    # Inbound receipts (bodies up to the request limit each) age out like the rest of the history.
    "DELETE FROM inbound_events WHERE seq IN (SELECT seq FROM inbound_events WHERE received_at < %(cutoff)s"
    " LIMIT %(batch)s)",
)


async def sweep(database: Database, *, cutoff: datetime, batch: int = 1000, max_batches: int = 1000) -> int:
    """Deletes rows older than `cutoff`; returns how many. Stops after `max_batches` per table so one
    round stays bounded; the next round continues. Each batch is its own short transaction, taken
    only under the retention lock: while another process holds it, this one leaves the round."""

    async def one_batch(statement: str) -> int | None:
        async def delete(connection: Connection) -> int | None:
            locked = await (await connection.execute(_LOCK)).fetchone()
            if not (locked and locked[0]):
                return None
            return (await connection.execute(statement, {"cutoff": cutoff, "batch": batch})).rowcount

        return await database.transaction(delete)

    removed = 0
    for statement in _BATCHES:
        for _ in range(max_batches):
            deleted = await one_batch(statement)
            if deleted is None:
                return removed
            removed += deleted
            if deleted < batch:
                break
    return removed
