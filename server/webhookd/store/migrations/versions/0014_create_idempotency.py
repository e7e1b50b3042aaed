"""Idempotent creates: the key a CreateWebhook named itself with, and its request's fingerprint.

A create whose answer was lost (its COMMIT unanswered, or the caller's connection gone) can be retried
with the same key and gets the webhook the first one made, instead of a second webhook that delivers
every event again. The key is held once per tenant and app, as an event's is (events_idempotency).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("idempotency_key", sa.Text))
    op.add_column("webhooks", sa.Column("idempotency_request", sa.Text))
    op.execute(
        "CREATE UNIQUE INDEX webhooks_idempotency ON webhooks (tenant_id, coalesce(app_id, ''), idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("webhooks_idempotency", "webhooks")
    op.drop_column("webhooks", "idempotency_request")
    op.drop_column("webhooks", "idempotency_key")
