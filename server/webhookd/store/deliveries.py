"""The delivery queue: claim due deliveries under a lease, record attempts, release on shutdown.

A claim moves `next_attempt_at` to the lease's end, so a worker that dies simply lets the delivery
come due again and another worker reclaims it. Each claim carries a fresh `lease_token`; a worker
whose lease was taken over can still log its attempt but no longer changes the delivery.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from webhookd.domain import ids
from webhookd.domain.deliveries import AttemptRecord, ClaimedDelivery
from webhookd.domain.statuses import DeliveryStatus
from webhookd.domain.webhooks import Backoff, RetryPolicy, SignatureScheme
from webhookd.store.database import reader
from webhookd.store.tables import attempts, deliveries, webhooks

# One claimer at a time makes the per-webhook concurrency cap exact across processes; a claim is a
# single short statement, so serialising it costs little.
CLAIM_LOCK_ID = 7_202_611_27
# Beyond the HTTP timeout, how long a claimed delivery may take to be recorded before reclaim.
LEASE_MARGIN = timedelta(seconds=30)
# How stale a healthy webhook's last_delivery_at may get before a success writes it again.
STATS_RESOLUTION = timedelta(seconds=1)
_PENDING = DeliveryStatus.PENDING.value

_CLAIM = sa.text(
    f"""
WITH inflight AS (
    SELECT webhook_id, count(*) AS n FROM deliveries
    WHERE status = '{_PENDING}' AND lease_token IS NOT NULL AND lease_expires_at > now()
    GROUP BY webhook_id
), due AS (
    SELECT d.id, d.webhook_id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at) AS rank
    FROM (
        SELECT d.id, d.webhook_id, d.next_attempt_at FROM deliveries d
        JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.status = '{_PENDING}' AND d.next_attempt_at <= now()
          AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
        ORDER BY d.next_attempt_at
        LIMIT :scan
    ) d
), chosen AS (
    SELECT due.id FROM due LEFT JOIN inflight USING (webhook_id)
    WHERE due.rank + coalesce(inflight.n, 0) <= :per_webhook
    LIMIT :limit
)
UPDATE deliveries d SET
    lease_token = :token,
    lease_expires_at = now() + make_interval(secs => w.retry_timeout_ms / 1000.0 + :margin),
    next_attempt_at = now() + make_interval(secs => w.retry_timeout_ms / 1000.0 + :margin),
    updated_at = now()
FROM chosen, webhooks w, events e
WHERE d.id = chosen.id AND w.id = d.webhook_id AND e.id = d.event_id
RETURNING d.id AS delivery_id, d.attempts + 1 AS attempt, d.tenant_id, d.app_id, d.event_id,
    e.event_type, e.body, d.webhook_id, w.url, w.headers, w.signature_scheme, w.retry_max_attempts,
    w.retry_backoff, w.retry_timeout_ms, w.vault_path
"""
)


def _claimed(row: Any, token: str) -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=row.delivery_id,
        lease_token=token,
        attempt=row.attempt,
        tenant_id=row.tenant_id,
        app_id=row.app_id,
        event_id=row.event_id,
        event_type=row.event_type,
        body=bytes(row.body),
        webhook_id=row.webhook_id,
        url=row.url,
        headers=dict(row.headers),
        signature_scheme=SignatureScheme(row.signature_scheme),
        retry_policy=RetryPolicy(row.retry_max_attempts, Backoff(row.retry_backoff), row.retry_timeout_ms),
        vault_path=row.vault_path,
    )


class DeliveryStore:
    """The delivery queue (ports.DeliveryQueue) in PostgreSQL."""

    def __init__(self, engine: AsyncEngine, *, pause_after_failures: int) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._pause_after_failures = pause_after_failures

    async def claim(self, limit: int, *, per_webhook: int) -> list[ClaimedDelivery]:
        token = secrets.token_hex(12)
        async with self._engine.begin() as connection:
            await connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({CLAIM_LOCK_ID})"))
            rows = await connection.execute(
                _CLAIM,
                {
                    "token": token,
                    "limit": limit,
                    "scan": limit * 4,
                    "per_webhook": per_webhook,
                    "margin": LEASE_MARGIN.total_seconds(),
                },
            )
            return [_claimed(row, token) for row in rows]

    async def next_due_at(self) -> datetime | None:
        async with self._reader.connect() as connection:
            value: datetime | None = await connection.scalar(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(deliveries.c.status == _PENDING)
            )
            return value

    async def record(self, claimed: ClaimedDelivery, record: AttemptRecord) -> bool:
        """Logs the attempt and moves the delivery and its webhook on; False when the lease was lost."""
        async with self._engine.begin() as connection:
            await connection.execute(
                attempts.insert().values(
                    id=ids.new_id(ids.ATTEMPT_PREFIX),
                    tenant_id=claimed.tenant_id,
                    app_id=claimed.app_id,
                    delivery_id=claimed.delivery_id,
                    event_id=claimed.event_id,
                    event_type=claimed.event_type,
                    webhook_id=claimed.webhook_id,
                    attempt=claimed.attempt,
                    outcome=record.outcome.value,
                    http_status=record.http_status,
                    latency_ms=record.latency_ms,
                    error=record.error,
                    response_excerpt=record.response_excerpt,
                    next_attempt_at=record.next_attempt_at,
                    occurred_at=record.occurred_at,
                )
            )
            updated = await connection.execute(
                deliveries.update()
                .where(deliveries.c.id == claimed.delivery_id, deliveries.c.lease_token == claimed.lease_token)
                .values(
                    status=record.delivery_status.value,
                    attempts=claimed.attempt,
                    next_attempt_at=record.next_attempt_at,
                    lease_token=None,
                    lease_expires_at=None,
                    last_outcome=record.outcome.value,
                    last_http_status=record.http_status,
                    last_error=record.error,
                    updated_at=record.occurred_at,
                    completed_at=record.occurred_at if record.finished else None,
                )
            )
            await connection.execute(self._webhook_state(claimed.webhook_id, record))
        return updated.rowcount == 1

    def _webhook_state(self, webhook_id: str, record: AttemptRecord) -> sa.Update:
        failures = sa.case((sa.literal(record.succeeded), 0), else_=webhooks.c.consecutive_failures + 1)
        pause_now = sa.and_(
            webhooks.c.paused_at.is_(None),
            sa.or_(
                sa.literal(record.gone),
                sa.and_(
                    sa.literal(not record.succeeded),
                    webhooks.c.consecutive_failures + 1 >= self._pause_after_failures,
                ),
            ),
        )
        # A success on a healthy webhook changes nothing callers see but last_delivery_at: skipping
        # that write while it is under a second old keeps concurrent deliveries to one webhook from
        # queueing on its row lock (a non-matching UPDATE takes no lock).
        unchanged_success = sa.and_(
            sa.literal(record.succeeded),
            webhooks.c.consecutive_failures == 0,
            webhooks.c.last_delivery_status == record.outcome.value,
            webhooks.c.last_delivery_at >= record.occurred_at - STATS_RESOLUTION,
        )
        return (
            webhooks.update()
            .where(webhooks.c.id == webhook_id, sa.not_(unchanged_success))
            .values(
                last_delivery_at=record.occurred_at,
                last_delivery_status=record.outcome.value,
                consecutive_failures=failures,
                paused_at=sa.case((pause_now, record.occurred_at), else_=webhooks.c.paused_at),
                # Pausing changes is_active, a state callers see: it is a new version.
                version=sa.case((pause_now, webhooks.c.version + 1), else_=webhooks.c.version),
            )
        )

    async def release(self, claimed: ClaimedDelivery, *, retry_at: datetime) -> None:
        """Gives a claimed delivery back without an attempt (shutdown, or no secret to sign with)."""
        async with self._engine.begin() as connection:
            await connection.execute(
                deliveries.update()
                .where(deliveries.c.id == claimed.delivery_id, deliveries.c.lease_token == claimed.lease_token)
                .values(next_attempt_at=retry_at, lease_token=None, lease_expires_at=None)
            )
