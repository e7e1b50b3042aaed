"""`ping_buckets`: one token bucket of test sends (SendTestEvent) per webhook, for the whole fleet.

A test is a real POST to the customer's endpoint made at once by the server; the bucket's row lock
orders every process's calls, so the limit (domain/pings.py) holds however many servers run.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ping_buckets",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ping_buckets")
