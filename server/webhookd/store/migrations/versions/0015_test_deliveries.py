"""`deliveries.is_test`: the delivery of a test event (SendTestEvent), told apart from real events'.

RecoverWebhook requeues a webhook's failed deliveries; a failed test ping is one too, but it was a
check of the endpoint at the time, not an event the customer missed, and resending it later would
post stale pings. Nothing already stored says which deliveries are tests: the event type is the
caller's choice, and a publish aimed at one webhook sets `events.target_webhook_id` as a test does.

A constant default adds the column without rewriting a partition. Tests recorded before this
migration stay unmarked; recovery reaches back 14 days, so they age out of its reach.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("deliveries", "is_test")
