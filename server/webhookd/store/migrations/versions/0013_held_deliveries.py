"""The partial index `deliveries_held`: the held deliveries only, by webhook.

The worker's held round (store/stranded_held.py) looks for held deliveries of webhooks that are no
longer paused. Held deliveries belong to paused webhooks, few of them, so with this index the round
reads a few index pages, not one probe per webhook and week (deliveries_webhook_status would); the
other deliveries, nearly all, are not in it and cost it nothing to write.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX deliveries_held ON deliveries (webhook_id) WHERE status = 'held'")


def downgrade() -> None:
    op.drop_index("deliveries_held", "deliveries")
