"""Inbound receipts and the consumers that read them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_events",
        # (txid, seq) orders the stream by commit visibility, as for attempts.
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "txid", sa.BigInteger, nullable=False, server_default=sa.text("(pg_current_xact_id()::text::bigint)")
        ),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("webhook_id", sa.Text, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('accepted', 'rejected')", name="inbound_events_status"),
    )
    # A sender's retry of an accepted message is acknowledged but stored once.
    op.execute(
        "CREATE UNIQUE INDEX inbound_events_message ON inbound_events (webhook_id, message_id) "
        "WHERE status = 'accepted' AND message_id IS NOT NULL"
    )
    op.create_index("inbound_events_tenant_log", "inbound_events", ["tenant_id", "txid", "seq"])
    op.create_index("inbound_events_webhook_log", "inbound_events", ["webhook_id", "txid", "seq"])
    op.create_index("inbound_events_received_at", "inbound_events", ["received_at"])
    op.create_table(
        "inbound_consumers",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbound_consumers")
    op.drop_table("inbound_events")
