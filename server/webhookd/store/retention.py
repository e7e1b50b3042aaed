"""Retention: old history leaves a week at a time, by dropping partitions; the rest row by row.

- attempts and inbound_events: a week's partition is dropped once the whole week is older than the
  cutoff. A log line's age alone decides.
- deliveries: the same, except that pending deliveries are still owed to their receivers (those of a
  paused, disabled or deleted webhook can wait longer than the retention period). In the drop's
  transaction they move, ids unchanged, into the default partition, which no longer overlaps the
  dropped week: the week goes whole and they stay, claimable and redeliverable as before.
- What partitions do not hold goes in small batches of rows, each its own transaction: finished
  rows of the default partitions, and events that are old and that no delivery refers to (so a kept
  delivery keeps its event).
- Token bucket rows as good as absent (store/token_buckets.py), in batches too: refilled to their
  burst, or of a webhook that no longer exists. What is full depends on the rate and burst, so the
  sweeping worker must have the servers' inbound limits (WEBHOOKD_INBOUND_*), as the fleet does.

Only one process sweeps: every transaction starts with the retention try-lock, and while another
process holds it this one leaves the round (and a week another process dropped since this one listed
the partitions is passed over). Dropping a partition takes an ACCESS EXCLUSIVE lock on its table,
which queries queue behind: the wait for it is bounded (`lock_timeout`; a table busy for longer is
tried again at the next round), and so is how long a sweeper that went silent keeps it
(`idle_in_transaction_session_timeout`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from webhookd.domain.pings import PING_BURST, PINGS_PER_SECOND
from webhookd.domain.statuses import DeliveryStatus
from webhookd.store import partitions, token_buckets
from webhookd.store.database import Connection, Database
from webhookd.store.sql import compiled

log = logging.getLogger("webhookd.retention")

# Only one process sweeps at a time; the others skip the round. With the lock, nested loops: the
# planner prices the events batch's NOT EXISTS probe into deliveries as a probe of every partition
# and would rather hash all of deliveries, once per batch (8 s a week at 2,000,000 deliveries).
# And a plan for each batch's cutoff: a generic one (which a pooled connection switches to after a
# few batches) does not know how few rows are older than it, and scans the whole of
# deliveries_default, mostly pending deliveries kept from dropped weeks, rather than use its index.
RETENTION_LOCK_ID = 7_202_611_32
_LOCK = (
    f"SELECT pg_try_advisory_xact_lock({RETENTION_LOCK_ID}),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)
_PENDING = DeliveryStatus.PENDING.value

_BATCHES = (
    # The default partitions hold what no week covered, and pending deliveries kept from dropped weeks.
    "DELETE FROM attempts_default WHERE seq IN"
    " (SELECT seq FROM attempts_default WHERE occurred_at < %(cutoff)s LIMIT %(batch)s)",
    "DELETE FROM inbound_events_default WHERE seq IN"
    " (SELECT seq FROM inbound_events_default WHERE received_at < %(cutoff)s LIMIT %(batch)s)",
    # By deliveries_default_finished (migration 0017), whose predicate is this one's.
    # The status again outside the subquery: a row requeued (redeliver, recover) while the DELETE waited
    # for its lock is checked again as committed, where the subquery's answer is the one from before.
    f"DELETE FROM deliveries_default WHERE status <> '{_PENDING}' AND id IN (SELECT id FROM deliveries_default"
    f" WHERE status <> '{_PENDING}' AND created_at < %(cutoff)s LIMIT %(batch)s)",
    # After the deliveries: an event goes only once no delivery refers to it.
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < %(cutoff)s"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT %(batch)s)",
)


def bucket_limits(*, inbound_per_second: float, inbound_burst: int) -> tuple[token_buckets.Limit, ...]:
    """Every bucket table with its limits: the inbound ones the settings', SendTestEvent's its own."""
    return (
        token_buckets.Limit("inbound_buckets", inbound_per_second, inbound_burst),
        token_buckets.Limit("ping_buckets", PINGS_PER_SECOND, PING_BURST),
    )


def _forget_buckets(table: str) -> str:
    # The condition again outside the subquery: a token taken while the DELETE waited for the row's
    # lock is checked again as committed, where the subquery's answer is the one from before.
    forgettable = token_buckets.forgettable(rate="per_second")
    return compiled(
        sa.text(
            f"DELETE FROM {table} AS b WHERE {forgettable} AND b.webhook_id IN"
            f" (SELECT b.webhook_id FROM {table} AS b WHERE {forgettable} LIMIT :batch)"
        )
    )


class _Skipped(enum.Enum):
    SWEEPING_ELSEWHERE = "another process holds the retention lock"
    TABLE_BUSY = "the table stayed locked longer than lock_timeout"
    GONE = "another process dropped it since this one listed the partitions"


@dataclass
class Swept:
    """What one round removed."""

    dropped: list[str] = field(default_factory=list)  # partitions, each a week of one table
    kept_pending: int = 0  # pending deliveries moved out of dropped weeks into the default partition
    deleted: int = 0  # rows deleted one by one (default partitions, events, token buckets)


async def cutoff(database: Database, *, keep: timedelta) -> datetime:
    """`keep` before now on the database's clock: one clock for every process, whatever theirs say
    (a worker's running weeks ahead would otherwise drop this week's history)."""
    row = await database.fetch_one("SELECT now() - %(keep)s", {"keep": keep})
    assert row is not None
    at: datetime = row[0]
    return at


async def sweep(
    database: Database,
    *,
    cutoff: datetime,
    buckets: Sequence[token_buckets.Limit] = (),
    batch: int = 1000,
    max_batches: int = 1000,
) -> Swept:
    """Removes history older than `cutoff`, and the rows of `buckets` as good as absent. Row batches
    stop after `max_batches` per table so one round stays bounded; the next round continues."""
    swept = Swept()
    existing = await database.run(partitions.partitions_of)
    for table in partitions.TABLES:
        for name in sorted(existing[table.name]):
            period = table.period_of(name)
            if period is None or period.end > cutoff:
                continue
            outcome = await _drop_partition(database, table, name)
            if outcome is _Skipped.SWEEPING_ELSEWHERE:
                return swept
            if outcome is _Skipped.GONE:
                continue
            if outcome is _Skipped.TABLE_BUSY:
                log.warning("partition not dropped this round: table busy", extra={"partition": name})
                continue
            swept.dropped.append(name)
            swept.kept_pending += outcome
    batches: list[tuple[str, Mapping[str, Any]]] = [(statement, {"cutoff": cutoff}) for statement in _BATCHES]
    batches += [
        (_forget_buckets(limit.table), {"per_second": limit.per_second, "burst": limit.burst}) for limit in buckets
    ]
    for statement, values in batches:
        for _ in range(max_batches):
            deleted = await _delete_batch(database, statement, values, batch=batch)
            if deleted is None:
                return swept
            swept.deleted += deleted
            if deleted < batch:
                break
    return swept


async def _locked(connection: Connection) -> bool:
    row = await (await connection.execute(_LOCK)).fetchone()
    return bool(row and row[0])


async def _exists(connection: Connection, name: str) -> bool:
    row = await (await connection.execute("SELECT to_regclass(%(name)s) IS NOT NULL", {"name": name})).fetchone()
    return bool(row and row[0])


async def _drop_partition(database: Database, table: partitions.PartitionedTable, name: str) -> int | _Skipped:
    """Drops one week of `table`; how many pending deliveries it kept."""
    partition = sql.Identifier(name)
    columns = sql.SQL(", ").join(sql.Identifier(column.name) for column in table.table.columns)

    async def drop(connection: Connection) -> int | _Skipped:
        try:
            async with connection.transaction():
                if not await _locked(connection):
                    return _Skipped.SWEEPING_ELSEWHERE
                await connection.execute(partitions.DDL_LIMITS)
                if not await _exists(connection, name):
                    return _Skipped.GONE
                if table is not partitions.DELIVERIES:
                    await connection.execute(sql.SQL("DROP TABLE {}").format(partition))
                    return 0
                # Locked first, so no claim or record changes a pending row between its copy and the drop.
                await connection.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                await connection.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE kept_deliveries ON COMMIT DROP AS SELECT {} FROM {} WHERE status = {}"
                    ).format(columns, partition, sql.Literal(_PENDING))
                )
                await connection.execute(sql.SQL("DROP TABLE {}").format(partition))
                kept = await connection.execute(
                    sql.SQL("INSERT INTO deliveries ({}) SELECT {} FROM kept_deliveries").format(columns, columns)
                )
                return kept.rowcount
        except psycopg.errors.LockNotAvailable:
            return _Skipped.TABLE_BUSY

    return await database.run(drop)


async def _delete_batch(database: Database, statement: str, values: Mapping[str, Any], *, batch: int) -> int | None:
    """One batch in a transaction of its own; None when another process is sweeping."""

    async def delete(connection: Connection) -> int | None:
        if not await _locked(connection):
            return None
        return (await connection.execute(statement, {**values, "batch": batch})).rowcount

    return await database.transaction(delete)
