"""A webhook's delivery credential: the header its deliveries carry for a receiver that authenticates
its callers (SetWebhookCredential).

- `webhooks.credential_header`: the header's name, '' when the webhook has none; the value is in
  Vault, in the webhook's secret record, never in the database.
- `webhooks.credential_id`: a random id of the credential as last set, written into the Vault record
  with it, '' when none. The claim hands it to the worker, whose cache of secret records keys on it,
  so a delivery that starts after SetWebhookCredential returns reads the new record
  (services/signing_secrets.py). Random, not derived from the value: a credential may be a guessable
  password, and nothing about it belongs in the database.

- `attempts.kind` may be `webhook.credential_changed`: the DeliveryLog entry of a credential set,
  replaced or removed.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


_KINDS = (
    "('attempt', 'webhook.paused', 'webhook.resumed', 'webhook.disabled', 'webhook.enabled',"
    " 'webhook.secret_rotated', 'webhook.recovered', 'webhook.deleted', 'webhook.undeleted'{more})"
)


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("credential_header", sa.Text, nullable=False, server_default=""))
    op.add_column("webhooks", sa.Column("credential_id", sa.Text, nullable=False, server_default=""))
    op.drop_constraint("attempts_kind", "attempts", type_="check")
    op.create_check_constraint(
        "attempts_kind", "attempts", "kind IN " + _KINDS.format(more=", 'webhook.credential_changed'")
    )


def downgrade() -> None:
    op.execute("DELETE FROM attempts WHERE kind = 'webhook.credential_changed'")
    op.drop_constraint("attempts_kind", "attempts", type_="check")
    op.create_check_constraint("attempts_kind", "attempts", "kind IN " + _KINDS.format(more=""))
    op.drop_column("webhooks", "credential_id")
    op.drop_column("webhooks", "credential_header")
