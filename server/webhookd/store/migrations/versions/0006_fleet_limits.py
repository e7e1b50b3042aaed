"""Limits that hold for the whole fleet: inbound rate buckets and open-stream leases.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One token bucket per inbound webhook, shared by every process (the row lock orders them).
    op.create_table(
        "inbound_buckets",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # One row per open stream (DeliveryLog, StreamInboundEvents), renewed while it is open, so a
    # process that dies gives its streams' places back when their leases run out.
    op.create_table(
        "stream_leases",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("stream_leases_tenant", "stream_leases", ["tenant_id", "expires_at"])


def downgrade() -> None:
    op.drop_table("stream_leases")
    op.drop_table("inbound_buckets")
