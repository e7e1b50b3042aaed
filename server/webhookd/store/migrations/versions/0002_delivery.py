"""Events, the delivery queue and the attempt log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("target_webhook_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # One live event per key and scope; keys older than the window are released by the publisher.
    op.execute(
        "CREATE UNIQUE INDEX events_idempotency ON events (tenant_id, coalesce(app_id, ''), idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    op.create_index("events_created_at", "events", ["created_at"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("event_id", sa.Text, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("webhook_id", sa.Text, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("lease_token", sa.Text),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_outcome", sa.Text),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="deliveries_status"),
    )
    # The claim query's scan: due pending deliveries in time order.
    op.execute("CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending'")
    # In-flight count per webhook for the concurrency cap.
    op.execute(
        "CREATE INDEX deliveries_leased ON deliveries (webhook_id, lease_expires_at) "
        "WHERE status = 'pending' AND lease_token IS NOT NULL"
    )
    op.create_index("deliveries_webhook", "deliveries", ["webhook_id", "id"])
    op.create_index("deliveries_tenant", "deliveries", ["tenant_id", "id"])
    op.create_index("deliveries_event", "deliveries", ["event_id"])

    op.create_table(
        "attempts",
        # (txid, seq) orders the log by commit visibility: see store/attempts.py.
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "txid", sa.BigInteger, nullable=False, server_default=sa.text("(pg_current_xact_id()::text::bigint)")
        ),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("webhook_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("response_excerpt", sa.Text, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("attempts_delivery", "attempts", ["delivery_id", "seq"])
    op.create_index("attempts_occurred_at", "attempts", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("deliveries")
    op.drop_table("events")
