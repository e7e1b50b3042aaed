"""Publishing: the event row and its fan-out of deliveries, written in one transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webhookd.domain import ids
from webhookd.domain.errors import NotFound
from webhookd.domain.events import IDEMPOTENCY_WINDOW, NewEvent, Published
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus
from webhookd.domain.webhooks import Direction
from webhookd.store.scoping import scoped
from webhookd.store.tables import deliveries, events, webhooks

_DELIVERY_COLUMNS = (
    "id",
    "tenant_id",
    "app_id",
    "event_id",
    "webhook_id",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


class EventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def publish(self, scope: Scope, event: NewEvent, matching_filters: list[str]) -> Published:
        async with self._engine.begin() as connection:
            if event.idempotency_key is not None:
                earlier = await self._claim_idempotency_key(connection, scope, event)
                if earlier is not None:
                    return earlier
            else:
                await connection.execute(events.insert().values(self._event_row(scope, event)))
            targets = await self._matching_webhooks(connection, scope, event, matching_filters)
            await _copy_deliveries(connection, scope, event, targets)
        return Published(event.id, len(targets), duplicate=False)

    @staticmethod
    def _event_row(scope: Scope, event: NewEvent) -> dict[str, object]:
        return {
            "id": event.id,
            "tenant_id": scope.tenant_id,
            "app_id": scope.app_id,
            "event_type": event.event_type,
            "body": event.body,
            "idempotency_key": event.idempotency_key,
            "target_webhook_id": event.target_webhook_id,
            "created_at": event.created_at,
        }

    async def _claim_idempotency_key(
        self, connection: AsyncConnection, scope: Scope, event: NewEvent
    ) -> Published | None:
        """Inserts the event unless a live event holds its key; returns that earlier event if so."""
        for _ in range(2):
            inserted = await connection.scalar(
                sa.text(
                    "INSERT INTO events (id, tenant_id, app_id, event_type, body, idempotency_key,"
                    " target_webhook_id, created_at) VALUES (:id, :tenant_id, :app_id, :event_type, :body,"
                    " :idempotency_key, :target_webhook_id, :created_at)"
                    " ON CONFLICT (tenant_id, coalesce(app_id, ''), idempotency_key)"
                    " WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
                ),
                self._event_row(scope, event),
            )
            if inserted is not None:
                return None
            earlier = (
                await connection.execute(
                    sa.select(events.c.id, events.c.created_at).where(
                        events.c.tenant_id == scope.tenant_id,
                        sa.func.coalesce(events.c.app_id, "") == (scope.app_id or ""),
                        events.c.idempotency_key == event.idempotency_key,
                    )
                )
            ).one_or_none()
            if earlier is None:
                continue  # released between our insert and select: try once more
            if event.created_at - earlier.created_at < IDEMPOTENCY_WINDOW:
                queued = await connection.scalar(
                    sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.event_id == earlier.id)
                )
                return Published(earlier.id, int(queued or 0), duplicate=True)
            # The earlier event is outside the window: it keeps its history, the key moves on.
            await connection.execute(events.update().where(events.c.id == earlier.id).values(idempotency_key=None))
        raise RuntimeError("idempotency key could not be claimed")

    async def _matching_webhooks(
        self, connection: AsyncConnection, scope: Scope, event: NewEvent, matching_filters: list[str]
    ) -> list[str]:
        conditions = [
            scoped(webhooks, scope),
            webhooks.c.direction == Direction.OUTBOUND.value,
            webhooks.c.enabled.is_(True),
            webhooks.c.deleted_at.is_(None),
            webhooks.c.paused_at.is_(None),
            webhooks.c.event_types.overlap(matching_filters),
        ]
        if event.target_webhook_id is not None:
            exists = await connection.scalar(
                sa.select(webhooks.c.id).where(scoped(webhooks, scope), webhooks.c.id == event.target_webhook_id)
            )
            if exists is None:
                raise NotFound(f"webhook {event.target_webhook_id} not found")
            conditions.append(webhooks.c.id == event.target_webhook_id)
        rows = await connection.execute(sa.select(webhooks.c.id).where(*conditions))
        return [row.id for row in rows]


async def _copy_deliveries(connection: AsyncConnection, scope: Scope, event: NewEvent, webhook_ids: list[str]) -> None:
    """COPY rather than INSERT: a fan-out to thousands of webhooks is one round trip of rows."""
    if not webhook_ids:
        return
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    columns = ", ".join(_DELIVERY_COLUMNS)
    async with driver.cursor() as cursor, cursor.copy(f"COPY deliveries ({columns}) FROM STDIN") as copy:
        for webhook_id in webhook_ids:
            await copy.write_row(
                (
                    ids.new_id(ids.DELIVERY_PREFIX),
                    scope.tenant_id,
                    scope.app_id,
                    event.id,
                    webhook_id,
                    DeliveryStatus.PENDING.value,
                    0,
                    event.created_at,
                    event.created_at,
                    event.created_at,
                )
            )
