"""Reading the attempt log and delivery history, and queueing deliveries again (redeliver, recover).

The log is read in (txid, seq) order and only up to the oldest transaction still running
(`pg_snapshot_xmin`): a row whose transaction might still commit "behind" the reader is held back
until it is settled. So a follower that continues from its last position never skips a row that
committed late, and never sees one twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from webhookd.domain.deliveries import Delivery, DeliveryFilter
from webhookd.domain.errors import FailedPrecondition, NotFound
from webhookd.domain.history import LogEntry, LogFilter, LogPosition
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, Outcome
from webhookd.store.scoping import SETTLED_TXID, scoped
from webhookd.store.tables import attempts, deliveries, events, webhooks


def event_type_condition(column: sa.ColumnElement[str], filters: tuple[str, ...]) -> sa.ColumnElement[bool]:
    """Subscription-style matching in SQL: `*`, `prefix.*` or an exact type."""
    if "*" in filters:
        return sa.true()
    alternatives: list[sa.ColumnElement[bool]] = []
    for value in filters:
        if value.endswith(".*"):
            prefix = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            alternatives.append(column.like(f"{prefix}%", escape="\\"))
        else:
            alternatives.append(column == value)
    return sa.or_(*alternatives)


def log_entry(row: Any) -> LogEntry:
    return LogEntry(
        position=LogPosition(row.txid, row.seq),
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        event_type=row.event_type,
        webhook_id=row.webhook_id,
        attempt=row.attempt,
        outcome=Outcome(row.outcome),
        http_status=row.http_status,
        latency_ms=row.latency_ms,
        error=row.error,
        response_excerpt=row.response_excerpt,
        next_attempt_at=row.next_attempt_at,
        occurred_at=row.occurred_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        webhook_id=row.webhook_id,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_outcome=None if row.last_outcome is None else Outcome(row.last_outcome),
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


_DELIVERY_COLUMNS = (*deliveries.c, events.c.event_type)


class HistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def read_log(
        self,
        scope: Scope,
        query: LogFilter,
        *,
        after: LogPosition | None,
        since: datetime | None,
        limit: int,
    ) -> list[LogEntry]:
        conditions = [scoped(attempts, scope), attempts.c.txid < SETTLED_TXID]
        if query.webhook_id is not None:
            conditions.append(attempts.c.webhook_id == query.webhook_id)
        if query.outcomes:
            conditions.append(attempts.c.outcome.in_([outcome.value for outcome in query.outcomes]))
        if query.event_types:
            conditions.append(event_type_condition(attempts.c.event_type, query.event_types))
        if after is not None:
            conditions.append(sa.tuple_(attempts.c.txid, attempts.c.seq) > sa.tuple_(after.txid, after.seq))
        elif since is not None:
            conditions.append(attempts.c.occurred_at >= since)
        statement = sa.select(attempts).where(*conditions).order_by(attempts.c.txid, attempts.c.seq).limit(limit)
        async with self._engine.connect() as connection:
            rows = await connection.execute(statement)
            return [log_entry(row) for row in rows]

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        conditions = [scoped(deliveries, scope)]
        if query.webhook_id is not None:
            conditions.append(deliveries.c.webhook_id == query.webhook_id)
        if query.status is not None:
            conditions.append(deliveries.c.status == query.status.value)
        if query.last_outcome is not None:
            conditions.append(deliveries.c.last_outcome == query.last_outcome.value)
        if query.event_types:
            conditions.append(event_type_condition(events.c.event_type, query.event_types))
        if query.start_time is not None:
            conditions.append(deliveries.c.created_at >= query.start_time)
        if query.end_time is not None:
            conditions.append(deliveries.c.created_at < query.end_time)
        if before is not None:
            conditions.append(sa.tuple_(deliveries.c.created_at, deliveries.c.id) < sa.tuple_(*before))
        statement = (
            sa.select(*_DELIVERY_COLUMNS)
            .join_from(deliveries, events, events.c.id == deliveries.c.event_id)
            .where(*conditions)
            .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            return [_delivery(row) for row in await connection.execute(statement)]

    async def get_delivery(self, scope: Scope, delivery_id: str) -> tuple[Delivery, list[LogEntry]]:
        statement = (
            sa.select(*_DELIVERY_COLUMNS)
            .join_from(deliveries, events, events.c.id == deliveries.c.event_id)
            .where(scoped(deliveries, scope), deliveries.c.id == delivery_id)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            attempt_rows = await connection.execute(
                sa.select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.seq)
            )
            return _delivery(row), [log_entry(attempt) for attempt in attempt_rows]

    async def redeliver(self, scope: Scope, delivery_id: str, *, now: datetime) -> Delivery:
        not_in_flight = sa.or_(deliveries.c.lease_token.is_(None), deliveries.c.lease_expires_at <= now)
        statement = (
            deliveries.update()
            .where(scoped(deliveries, scope), deliveries.c.id == delivery_id, not_in_flight)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, completed_at=None, updated_at=now)
        )
        async with self._engine.begin() as connection:
            updated = await connection.execute(statement)
        if updated.rowcount == 0:
            await self.get_delivery(scope, delivery_id)  # NotFound when it is not the caller's
            raise FailedPrecondition(f"delivery {delivery_id} is being attempted right now; try again shortly")
        delivery, _ = await self.get_delivery(scope, delivery_id)
        return delivery

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime, now: datetime, batch: int = 1000) -> int:
        """Failed deliveries of the webhook since `since` become pending and due, a batch per transaction."""
        async with self._engine.connect() as connection:
            found = await connection.scalar(
                sa.select(webhooks.c.id).where(scoped(webhooks, scope), webhooks.c.id == webhook_id)
            )
        if found is None:
            raise NotFound(f"webhook {webhook_id} not found")
        chosen = (
            sa.select(deliveries.c.id)
            .where(
                scoped(deliveries, scope),
                deliveries.c.webhook_id == webhook_id,
                deliveries.c.status == DeliveryStatus.FAILED.value,
                deliveries.c.created_at >= since,
            )
            .limit(batch)
            .scalar_subquery()
        )
        statement = (
            deliveries.update()
            .where(deliveries.c.id.in_(chosen))
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, completed_at=None, updated_at=now)
        )
        queued = 0
        while True:
            async with self._engine.begin() as connection:
                result = await connection.execute(statement)
            queued += result.rowcount
            if result.rowcount < batch:
                return queued
