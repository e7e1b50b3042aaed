"""Indexes for the delivery log and delivery history.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DeliveryLog reads in (txid, seq) order within a tenant, or within one webhook.
    op.create_index("attempts_tenant_log", "attempts", ["tenant_id", "txid", "seq"])
    op.create_index("attempts_webhook_log", "attempts", ["webhook_id", "txid", "seq"])
    # ListDeliveries pages newest first; RecoverWebhook scans a webhook's failed deliveries by time.
    op.create_index("deliveries_tenant_created", "deliveries", ["tenant_id", "created_at", "id"])
    op.create_index("deliveries_webhook_status", "deliveries", ["webhook_id", "status", "created_at"])


def downgrade() -> None:
    op.drop_index("deliveries_webhook_status")
    op.drop_index("deliveries_tenant_created")
    op.drop_index("attempts_webhook_log")
    op.drop_index("attempts_tenant_log")
