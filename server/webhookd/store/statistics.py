"""Keeping the planner's picture of the queue tables current.

The claim and the log reads are planned from table statistics. A fresh or fast-growing queue is
far from what the statistics last said (autovacuum looks once a minute at best), and PostgreSQL
then plans as for a tiny table: for the claim, sorting every pending delivery instead of walking
the due index, ten times the work on a backlog of a few thousand. So the workers analyze a hot
table, or the partition of one, as soon as it has had as many changes as it has rows since it was
last analyzed (one process at a time), checking every second: enough to follow a table that grew
from nothing or doubled, while an ANALYZE (tens of milliseconds on a busy partition) stays rare.
Only the partitions that changed are analyzed: with weekly partitions, that is this week's, however
long the history. The webhooks table the claim
joins is analyzed too once it has rows it was never analyzed with: autovacuum waits for 50 changed
rows, and until then the planner takes a few new webhooks for none and loops over them, reading
each one's whole backlog, instead of walking the due index.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg import sql

from webhookd.domain.errors import Unavailable
from webhookd.store.database import Connection, Database

log = logging.getLogger("webhookd.statistics")
CHECK_SECONDS = 1.0
STATISTICS_LOCK_ID = 7_202_611_30
HOT_TABLES = ("deliveries", "attempts", "events", "inbound_events", "webhooks")
# The hot tables and their partitions with more changed rows than they hold (and never for a
# handful), or with rows and never analyzed.
_STALE = f"""
SELECT s.relname FROM pg_stat_user_tables s
LEFT JOIN pg_inherits i ON i.inhrelid = s.relid
LEFT JOIN pg_class parent ON parent.oid = i.inhparent
WHERE coalesce(parent.relname, s.relname) IN ({", ".join(f"'{table}'" for table in HOT_TABLES)})
  AND (s.n_mod_since_analyze > greatest(500, s.n_live_tup)
       OR (s.n_mod_since_analyze > 0 AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL))
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
                # Names come from the catalogue, quoted all the same.
                await connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
            return stale
        finally:
            await connection.execute(f"SELECT pg_advisory_unlock({STATISTICS_LOCK_ID})")

    # Not run again after a conflict: each ANALYZE commits on its own, and the next round comes soon.
    return await database.run(analyze, rerunnable=False)


async def keep_statistics(database: Database) -> None:
    """Runs until cancelled."""
    while True:
        try:
            analyzed = await analyze_stale_tables(database)
            if analyzed:
                log.debug("analyzed", extra={"tables": analyzed})
        except Unavailable:
            pass  # the database is away: the next round tries again
        except Exception:
            log.exception("keeping the planner's statistics failed")  # and the next round tries again
        await asyncio.sleep(CHECK_SECONDS)
