"""Reading events back: one event with the deliveries it made, and the caller's events page by page."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from webhookd.domain.deliveries import Delivery
from webhookd.domain.errors import NotFound
from webhookd.domain.events import EventFilter, StoredEvent, event_data
from webhookd.domain.scope import Scope
from webhookd.store.database import Connection, Database
from webhookd.store.history import DELIVERY_COLUMNS, delivery_from_row, event_type_condition, event_type_params
from webhookd.store.sql import compiled, param, scope_params, scoped
from webhookd.store.tables import deliveries, events

_EVENT_COLUMNS = (
    events.c.id,
    events.c.event_type,
    events.c.body,
    events.c.created_at,
    events.c.idempotency_key,
    events.c.target_webhook_id,
)
_GET_EVENT = compiled(sa.select(*_EVENT_COLUMNS).where(scoped(events), events.c.id == param("id")))
_DELIVERIES_OF = compiled(
    sa.select(*DELIVERY_COLUMNS)
    .join_from(deliveries, events, events.c.id == deliveries.c.event_id)
    .where(scoped(deliveries), deliveries.c.event_id == param("id"))
    .order_by(deliveries.c.id)
)


def _event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        id=row[0],
        event_type=row[1],
        payload_json=event_data(bytes(row[2])),
        created_at=row[3],
        idempotency_key=row[4],
        target_webhook_id=row[5],
    )


@functools.cache
def _list_statement(filters: frozenset[str]) -> str:
    conditions: list[sa.ColumnElement[bool]] = [scoped(events)]
    if "exact_types" in filters:
        conditions.append(event_type_condition(events.c.event_type))
    if "start_time" in filters:
        conditions.append(events.c.created_at >= param("start_time"))
    if "end_time" in filters:
        conditions.append(events.c.created_at < param("end_time"))
    if "before_id" in filters:
        conditions.append(events.c.id < param("before_id"))
    # Newest first by id: an event id is a ULID, so id order is publish order (index events_tenant_id).
    return compiled(sa.select(*_EVENT_COLUMNS).where(*conditions).order_by(events.c.id.desc()).limit(param("limit")))


class EventHistoryStore:
    """ports.EventHistory in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_event(self, scope: Scope, event_id: str) -> tuple[StoredEvent, list[Delivery]]:
        keys = scope_params(scope) | {"id": event_id}

        async def read(connection: Connection) -> tuple[Any, list[Any]]:
            async with connection.pipeline():
                event = await connection.execute(_GET_EVENT, keys)
                delivery_rows = await connection.execute(_DELIVERIES_OF, keys)
                return await event.fetchone(), await delivery_rows.fetchall()

        row, delivery_rows = await self._db.run(read)
        if row is None:
            raise NotFound.of("event", event_id)
        return _event(row), [delivery_from_row(delivery) for delivery in delivery_rows]

    async def list_events(
        self, scope: Scope, query: EventFilter, *, before_id: str | None, limit: int
    ) -> list[StoredEvent]:
        values: dict[str, Any] = scope_params(scope) | {"limit": limit} | event_type_params(query.event_types)
        if query.start_time is not None:
            values["start_time"] = query.start_time
        if query.end_time is not None:
            values["end_time"] = query.end_time
        if before_id is not None:
            values["before_id"] = before_id
        filters = frozenset(values) - {"tenant_id", "app_id", "limit", "type_patterns"}
        return [_event(row) for row in await self._db.fetch_all(_list_statement(filters), values)]
