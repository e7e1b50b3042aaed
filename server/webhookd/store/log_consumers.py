"""Named DeliveryLog consumers: the position each acknowledged, per tenant and app.

A consumer belongs to the caller's tenant and app: `app_id` is the app's id, or '' for a person's
tenant-wide consumer (as in inbound_consumers), so two apps' consumers of one name never move each other.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from webhookd.domain.history import LogPosition
from webhookd.domain.scope import Scope
from webhookd.store.database import Connection, Database
from webhookd.store.sql import acknowledgeable, compiled, param, refuse_unacknowledgeable
from webhookd.store.tables import attempts, delivery_log_consumers

_THE_CONSUMER = sa.and_(
    delivery_log_consumers.c.tenant_id == param("tenant_id"),
    delivery_log_consumers.c.app_id == param("app_key"),
    delivery_log_consumers.c.name == param("name"),
)
_POSITION = compiled(sa.select(delivery_log_consumers.c.txid, delivery_log_consumers.c.seq).where(_THE_CONSUMER))
# Positions only move forward: a stale acknowledgement leaves the newer position as it is.
_ACKNOWLEDGE = compiled(
    sa.text(
        """
INSERT INTO delivery_log_consumers AS c (tenant_id, app_id, name, txid, seq, updated_at)
VALUES (:tenant_id, :app_key, :name, :txid, :seq, :now)
ON CONFLICT (tenant_id, app_id, name) DO UPDATE SET txid = excluded.txid, seq = excluded.seq,
    updated_at = excluded.updated_at
WHERE (c.txid, c.seq) < (excluded.txid, excluded.seq)
"""
    )
)


_ACKNOWLEDGEABLE = acknowledgeable(attempts)


def _keys(scope: Scope, name: str) -> dict[str, str]:
    return {"tenant_id": scope.tenant_id, "app_key": scope.app_id or "", "name": name}


class LogConsumerStore:
    """ports.LogConsumers in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def position(self, scope: Scope, name: str) -> LogPosition | None:
        row = await self._db.fetch_one(_POSITION, _keys(scope, name))
        return None if row is None else LogPosition(row[0], row[1])

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        keys = _keys(scope, name)
        values = keys | {"txid": position.txid, "seq": position.seq, "now": now}

        async def write(connection: Connection) -> LogPosition:
            current = await (await connection.execute(_POSITION, keys)).fetchone()
            if current is not None and position <= (current[0], current[1]):
                return LogPosition(current[0], current[1])  # stale: the consumer stays where it is
            if not handed_out:
                await refuse_unacknowledgeable(connection, _ACKNOWLEDGEABLE, scope, position)
            await connection.execute(_ACKNOWLEDGE, values)
            row = await (await connection.execute(_POSITION, keys)).fetchone()
            assert row is not None
            return LogPosition(row[0], row[1])

        return await self._db.transaction(write)
