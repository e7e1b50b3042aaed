"""Inbound receipts: the webhook a request is for, the receipt row, and the consumers' positions.

A receipt also writes a line to the attempt log (outcome `received` or `rejected`), so it shows up
in the webhook's DeliveryLog like an outbound attempt does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from webhookd.domain import ids
from webhookd.domain.history import LogPosition
from webhookd.domain.inbound import InboundEvent, InboundTarget, Receipt
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import Outcome, ReceiptStatus
from webhookd.domain.webhooks import Direction, SignatureScheme
from webhookd.store.database import reader
from webhookd.store.scoping import SETTLED_TXID, scoped
from webhookd.store.tables import attempts, inbound_consumers, inbound_events, webhooks

_ACCEPTED = ReceiptStatus.ACCEPTED.value


def _event(row: Any) -> InboundEvent:
    return InboundEvent(
        position=LogPosition(row.txid, row.seq),
        id=row.id,
        webhook_id=row.webhook_id,
        message_id=row.message_id,
        event_type=row.event_type,
        content_type=row.content_type,
        body=bytes(row.body or b""),
        received_at=row.received_at,
    )


class InboundStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def target(self, webhook_id: str) -> InboundTarget | None:
        """The live, enabled inbound webhook with this id; its id is the only key the sender has."""
        statement = sa.select(webhooks).where(
            webhooks.c.id == webhook_id,
            webhooks.c.direction == Direction.INBOUND.value,
            webhooks.c.enabled.is_(True),
            webhooks.c.deleted_at.is_(None),
        )
        async with self._reader.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        if row is None:
            return None
        return InboundTarget(row.id, row.tenant_id, row.app_id, SignatureScheme(row.signature_scheme), row.vault_path)

    async def record(self, target: InboundTarget, receipt: Receipt) -> str | None:
        """Stores the receipt; returns its id, or None when an accepted message with the same id exists."""
        receipt_id = ids.new_id(ids.RECEIPT_PREFIX)
        insert = sa.text(
            "INSERT INTO inbound_events (id, tenant_id, app_id, webhook_id, message_id, status, reason,"
            " event_type, content_type, body, received_at) VALUES (:id, :tenant_id, :app_id, :webhook_id,"
            " :message_id, :status, :reason, :event_type, :content_type, :body, :received_at)"
            f" ON CONFLICT (webhook_id, message_id) WHERE status = '{_ACCEPTED}' AND message_id IS NOT NULL"
            " DO NOTHING RETURNING id"
        )
        async with self._engine.begin() as connection:
            stored = await connection.scalar(
                insert,
                {
                    "id": receipt_id,
                    "tenant_id": target.tenant_id,
                    "app_id": target.app_id,
                    "webhook_id": target.webhook_id,
                    "message_id": receipt.message_id,
                    "status": (ReceiptStatus.ACCEPTED if receipt.accepted else ReceiptStatus.REJECTED).value,
                    "reason": receipt.reason,
                    "event_type": receipt.event_type,
                    "content_type": receipt.content_type,
                    "body": receipt.body if receipt.accepted else None,
                    "received_at": receipt.received_at,
                },
            )
            if stored is None:
                return None
            await connection.execute(
                attempts.insert().values(
                    id=ids.new_id(ids.ATTEMPT_PREFIX),
                    tenant_id=target.tenant_id,
                    app_id=target.app_id,
                    delivery_id=receipt_id,
                    event_id=receipt.message_id or receipt_id,
                    event_type=receipt.event_type,
                    webhook_id=target.webhook_id,
                    attempt=1,
                    outcome=(Outcome.RECEIVED if receipt.accepted else Outcome.REJECTED).value,
                    http_status=receipt.http_status,
                    latency_ms=receipt.latency_ms,
                    error=receipt.reason,
                    response_excerpt="",
                    next_attempt_at=None,
                    occurred_at=receipt.received_at,
                )
            )
        return receipt_id

    async def read(
        self, scope: Scope, *, webhook_id: str | None, after: LogPosition | None, limit: int
    ) -> list[InboundEvent]:
        conditions = [
            scoped(inbound_events, scope),
            inbound_events.c.status == _ACCEPTED,
            inbound_events.c.txid < SETTLED_TXID,
        ]
        if webhook_id is not None:
            conditions.append(inbound_events.c.webhook_id == webhook_id)
        if after is not None:
            conditions.append(sa.tuple_(inbound_events.c.txid, inbound_events.c.seq) > sa.tuple_(after.txid, after.seq))
        statement = (
            sa.select(inbound_events)
            .where(*conditions)
            .order_by(inbound_events.c.txid, inbound_events.c.seq)
            .limit(limit)
        )
        async with self._reader.connect() as connection:
            return [_event(row) for row in await connection.execute(statement)]

    async def consumer_position(self, scope: Scope, name: str) -> LogPosition | None:
        statement = sa.select(inbound_consumers.c.txid, inbound_consumers.c.seq).where(
            inbound_consumers.c.tenant_id == scope.tenant_id, inbound_consumers.c.name == name
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else LogPosition(row.txid, row.seq)

    async def acknowledge(self, scope: Scope, name: str, position: LogPosition, *, now: datetime) -> LogPosition:
        """Moves the consumer to `position` unless it is already past it; returns where it is."""
        statement = sa.text(
            "INSERT INTO inbound_consumers (tenant_id, name, txid, seq, updated_at)"
            " VALUES (:tenant_id, :name, :txid, :seq, :now)"
            " ON CONFLICT (tenant_id, name) DO UPDATE SET txid = excluded.txid, seq = excluded.seq,"
            " updated_at = excluded.updated_at"
            " WHERE (inbound_consumers.txid, inbound_consumers.seq) < (excluded.txid, excluded.seq)"
        )
        async with self._engine.begin() as connection:
            await connection.execute(
                statement,
                {"tenant_id": scope.tenant_id, "name": name, "txid": position.txid, "seq": position.seq, "now": now},
            )
            row = (
                await connection.execute(
                    sa.select(inbound_consumers.c.txid, inbound_consumers.c.seq).where(
                        inbound_consumers.c.tenant_id == scope.tenant_id, inbound_consumers.c.name == name
                    )
                )
            ).one()
        return LogPosition(row.txid, row.seq)
