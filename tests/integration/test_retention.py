"""Retention removes old finished history in batches and keeps what is still owed or recent."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.store import retention
from webhookd.store.database import Database


async def _publish(caller) -> str:
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))
    return published.event_id


_DELIVERY = sa.text(
    "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, created_at, updated_at)"
    " VALUES ('dlv_' || :event_id, :tenant, :event_id, :webhook_id, :status, 1, :at, :at)"
)


async def test_sweep_removes_old_finished_history_and_keeps_pending_and_recent(
    caller, service, backends, database
) -> None:
    # Disabled: no worker touches the deliveries this test writes itself.
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="r", url="http://127.0.0.1:9/hook", enabled=False))
    )
    engine = database.engine
    swept = Database(backends.database_url, size=2)
    await swept.open()
    try:
        old_finished = await _publish(caller)
        old_pending = await _publish(caller)
        recent = await _publish(caller)
        long_ago = datetime.now(UTC) - timedelta(days=40)
        async with engine.begin() as connection:
            for event_id, status, at in (
                (old_finished, "succeeded", long_ago),
                (old_pending, "pending", long_ago),
                (recent, "succeeded", datetime.now(UTC)),
            ):
                await connection.execute(
                    sa.text("UPDATE events SET created_at = :at WHERE id = :id"), {"at": at, "id": event_id}
                )
                await connection.execute(
                    _DELIVERY,
                    {
                        "event_id": event_id,
                        "tenant": caller.tenant_id,
                        "webhook_id": created.webhook.id,
                        "status": status,
                        "at": at,
                    },
                )
        removed = await retention.sweep(swept, cutoff=datetime.now(UTC) - timedelta(days=30), batch=1)
        async with engine.connect() as connection:
            remaining = set(
                (
                    await connection.execute(
                        sa.text("SELECT id FROM events WHERE tenant_id = :t"), {"t": caller.tenant_id}
                    )
                ).scalars()
            )
        assert removed >= 2  # the old finished delivery and its event
        assert remaining == {old_pending, recent}
    finally:
        await swept.close()
