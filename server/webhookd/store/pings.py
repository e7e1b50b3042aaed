"""Test events (SendTestEvent) kept in history: the event, its one delivery and its one attempt.

Written in one transaction after the POST, when the outcome is known: the delivery is finished
(succeeded or failed) and never claimed, and the attempt takes its place in the DeliveryLog like
any other, marked `is_test` so RecoverWebhook never sends it again. The webhook's statistics are
left alone: a test neither pauses a webhook nor resets its failure count.
"""

from __future__ import annotations

import sqlalchemy as sa

from webhookd.domain import ids
from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.events import NewEvent
from webhookd.domain.statuses import LogKind
from webhookd.domain.webhooks import Webhook
from webhookd.store.database import Connection, Database
from webhookd.store.deliveries import headers_json
from webhookd.store.sql import compiled, param, storable_text
from webhookd.store.tables import attempts, deliveries, events

_EVENT = ("id", "tenant_id", "app_id", "event_type", "body", "idempotency_key", "target_webhook_id", "created_at")
_DELIVERY = (
    "id",
    "tenant_id",
    "app_id",
    "event_id",
    "webhook_id",
    "status",
    "attempts",
    "next_attempt_at",
    "last_outcome",
    "last_http_status",
    "last_error",
    "created_at",
    "updated_at",
    "completed_at",
    "is_test",
)
_ATTEMPT = (
    "id",
    "tenant_id",
    "app_id",
    "delivery_id",
    "event_id",
    "event_type",
    "webhook_id",
    "attempt",
    "outcome",
    "http_status",
    "latency_ms",
    "error",
    "response_excerpt",
    "next_attempt_at",
    "occurred_at",
    "kind",
    "reason",
    "delivery_count",
)


def _insert(table: sa.Table, columns: tuple[str, ...], prefix: str) -> str:
    return compiled(table.insert().values({name: param(prefix + name) for name in columns}))


_INSERT_EVENT = _insert(events, _EVENT, "e_")
_INSERT_DELIVERY = _insert(deliveries, _DELIVERY, "d_")
# Headers as JSON text cast in SQL, as the recorder stores them: [name, value] pairs.
_INSERT_ATTEMPT = compiled(
    attempts.insert().values(
        {name: param("a_" + name) for name in _ATTEMPT}
        | {
            "request_headers": sa.cast(param("a_request_headers", sa.Text), attempts.c.request_headers.type),
            "response_headers": sa.cast(param("a_response_headers", sa.Text), attempts.c.response_headers.type),
        }
    )
)


class PingStore:
    """ports.PingRecords in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, webhook: Webhook, event: NewEvent, delivery_id: str, record: AttemptRecord) -> None:
        owner = {"tenant_id": webhook.tenant_id, "app_id": webhook.app_id}
        event_values = owner | {
            "id": event.id,
            "event_type": event.event_type,
            "body": event.body,
            "idempotency_key": None,
            "target_webhook_id": webhook.id,
            "created_at": event.created_at,
        }
        delivery_values = owner | {
            "id": delivery_id,
            "event_id": event.id,
            "webhook_id": webhook.id,
            "status": record.delivery_status.value,
            "attempts": 1,
            "next_attempt_at": None,
            "last_outcome": record.outcome.value,
            "last_http_status": record.http_status,
            "last_error": storable_text(record.error),
            "created_at": event.created_at,
            "updated_at": record.occurred_at,
            "completed_at": record.occurred_at,
            "is_test": True,  # RecoverWebhook never requeues it
        }
        attempt_values = owner | {
            "id": ids.new_id(ids.ATTEMPT_PREFIX),
            "delivery_id": delivery_id,
            "event_id": event.id,
            "event_type": event.event_type,
            "webhook_id": webhook.id,
            "attempt": 1,
            "outcome": record.outcome.value,
            "http_status": record.http_status,
            "latency_ms": record.latency_ms,
            "error": storable_text(record.error),
            "response_excerpt": storable_text(record.response_excerpt),
            "next_attempt_at": None,
            "occurred_at": record.occurred_at,
            "kind": LogKind.ATTEMPT.value,
            "reason": "",
            "delivery_count": 0,
            "request_headers": headers_json(record.request_headers),
            "response_headers": headers_json(record.response_headers),
        }

        async def write(connection: Connection) -> None:
            await connection.execute(_INSERT_EVENT, {"e_" + k: v for k, v in event_values.items()})
            await connection.execute(_INSERT_DELIVERY, {"d_" + k: v for k, v in delivery_values.items()})
            await connection.execute(_INSERT_ATTEMPT, {"a_" + k: v for k, v in attempt_values.items()})

        await self._db.transaction(write)
