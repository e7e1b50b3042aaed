"""ports.PingBuckets in PostgreSQL: each webhook's token bucket of test sends, one row, every process's
(store/token_buckets.py). A refused call reads the bucket again to say when a token will be.
"""

from __future__ import annotations

import sqlalchemy as sa

from webhookd.store import token_buckets
from webhookd.store.database import Database
from webhookd.store.sql import compiled

_TAKE = compiled(sa.text(token_buckets.take("ping_buckets", webhook_id=":webhook_id", rate="per_second")))
# What a refused call's bucket holds, read by a statement of its own: the refusal's snapshot was
# taken before it waited for the row, and can show tokens another process has taken since.
_HELD = compiled(sa.text(token_buckets.held("ping_buckets", webhook_id=":webhook_id", rate="per_second")))


class PingBucketStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def take(self, webhook_id: str, *, per_second: float, burst: int) -> float | None:
        values = {"webhook_id": webhook_id, "per_second": per_second, "burst": burst}
        if await self._db.execute(_TAKE, values):
            return None
        row = await self._db.fetch_one(_HELD, values)
        return token_buckets.seconds_until_a_token(0.0 if row is None else float(row[0]), per_second)
