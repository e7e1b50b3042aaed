"""Leaner deliveries: no foreign keys and no index another one already covers.

Measured on a fan-out of one event to 10,000 webhooks, COPY into `deliveries` cost 2.3-2.8x a bare
COPY, mostly index maintenance and two foreign-key checks per row. Webhooks are never hard-deleted
(soft delete) and events go only with their deliveries (retention), so the keys guarded nothing the
code does; (webhook_id, id) and (tenant_id, id) are covered by the (…, status, created_at) and
(…, created_at, id) indexes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("deliveries_event_id_fkey", "deliveries", type_="foreignkey")
    op.drop_constraint("deliveries_webhook_id_fkey", "deliveries", type_="foreignkey")
    op.drop_index("deliveries_webhook", "deliveries")
    op.drop_index("deliveries_tenant", "deliveries")


def downgrade() -> None:
    op.create_index("deliveries_tenant", "deliveries", ["tenant_id", "id"])
    op.create_index("deliveries_webhook", "deliveries", ["webhook_id", "id"])
    op.create_foreign_key(
        "deliveries_webhook_id_fkey", "deliveries", "webhooks", ["webhook_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key("deliveries_event_id_fkey", "deliveries", "events", ["event_id"], ["id"], ondelete="CASCADE")
