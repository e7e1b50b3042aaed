"""ports.PingBuckets in PostgreSQL: each webhook's token bucket of test sends, one row, every process's.

Taking a token is one statement: the row's lock (ON CONFLICT DO UPDATE locks it, updated or not)
orders the calls of every process, so the limit holds for the fleet. Time is clock_timestamp(),
read once the lock is held, as the inbound buckets do (store/inbound.py): a call that waited for
the lock must not count time backwards from a later writer's update. A refused call writes
nothing, so a flood of refused calls costs no writes; it reads the bucket again to say when a
token will be.
"""

from __future__ import annotations

import sqlalchemy as sa

from webhookd.store.database import Database
from webhookd.store.sql import compiled

_REFILLED = "greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * :per_second"
# A row written when a token is taken, none when the bucket holds less than one.
_TAKE = compiled(
    sa.text(
        f"""
INSERT INTO ping_buckets AS b (webhook_id, tokens, updated_at)
VALUES (:webhook_id, :burst - 1, clock_timestamp())
ON CONFLICT (webhook_id) DO UPDATE SET
    tokens = least(:burst, b.tokens + {_REFILLED}) - 1,
    updated_at = clock_timestamp()
WHERE least(:burst, b.tokens + {_REFILLED}) >= 1
"""
    )
)
# What a refused call's bucket holds, read by a statement of its own: the refusal's snapshot was
# taken before it waited for the row, and can show tokens another process has taken since.
_HELD = compiled(
    sa.text(f"SELECT least(:burst, b.tokens + {_REFILLED}) FROM ping_buckets b WHERE b.webhook_id = :webhook_id")
)


class PingBucketStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def take(self, webhook_id: str, *, per_second: float, burst: int) -> float | None:
        values = {"webhook_id": webhook_id, "per_second": per_second, "burst": burst}
        if await self._db.execute(_TAKE, values):
            return None
        row = await self._db.fetch_one(_HELD, values)
        tokens = 0.0 if row is None else float(row[0])
        return max(0.0, (1.0 - tokens) / per_second)
