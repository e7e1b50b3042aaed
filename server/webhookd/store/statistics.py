"""Keeping the planner's picture of the queue tables current.

The claim and the log reads are planned from table statistics. A fresh or fast-growing queue is
far from what the statistics last said (autovacuum looks once a minute at best), and PostgreSQL
then plans as for a tiny table: for the claim, sorting every pending delivery instead of walking
the due index, ten times the work on a backlog of a few thousand. So the workers analyze a hot
table as soon as it has changed by a fifth since it was last analyzed (one process at a time).
"""

from __future__ import annotations

import asyncio
import logging

from webhookd.domain.errors import Unavailable
from webhookd.store.database import Connection, Database

log = logging.getLogger("webhookd.statistics")
CHECK_SECONDS = 5.0
STATISTICS_LOCK_ID = 7_202_611_29
HOT_TABLES = ("deliveries", "attempts", "events", "inbound_events")
# Changed rows past which a table is analyzed: a fifth of what it held, and never for a handful.
_STALE = f"""
SELECT relname FROM pg_stat_user_tables
WHERE relname IN ({", ".join(f"'{table}'" for table in HOT_TABLES)})
  AND n_mod_since_analyze > greatest(500, 0.2 * n_live_tup)
"""


async def analyze_stale_tables(database: Database) -> list[str]:
    """ANALYZEs the hot tables whose statistics are stale; returns their names ([] when another
    process holds the lock)."""

    async def analyze(connection: Connection) -> list[str]:
        locked = await (await connection.execute(f"SELECT pg_try_advisory_lock({STATISTICS_LOCK_ID})")).fetchone()
        if not (locked and locked[0]):
            return []
        try:
            stale = [row[0] for row in await (await connection.execute(_STALE)).fetchall()]
            for table in stale:
                await connection.execute(f"ANALYZE {table}")
            return stale
        finally:
            await connection.execute(f"SELECT pg_advisory_unlock({STATISTICS_LOCK_ID})")

    return await database.run(analyze)


async def keep_statistics(database: Database) -> None:
    """Runs until cancelled."""
    while True:
        try:
            analyzed = await analyze_stale_tables(database)
            if analyzed:
                log.debug("analyzed", extra={"tables": analyzed})
        except Unavailable:
            pass  # the database is away: the next round tries again
        await asyncio.sleep(CHECK_SECONDS)
