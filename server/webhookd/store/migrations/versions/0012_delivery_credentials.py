"""A webhook's delivery credential: the header its deliveries carry for a receiver that authenticates
its callers (SetWebhookCredential).

- `webhooks.credential_header`: the header's name, '' when the webhook has none; the value is in
  Vault, in the webhook's secret record, never in the database.
- `webhooks.credential_id`: a random id of the credential as last set, written into the Vault record
  with it, '' when none. The claim hands it to the worker, whose cache of secret records keys on it,
  so a delivery that starts after SetWebhookCredential returns reads the new record
  (services/signing_secrets.py). Random, not derived from the value: a credential may be a guessable
  password, and nothing about it belongs in the database.

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


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("credential_header", sa.Text, nullable=False, server_default=""))
    op.add_column("webhooks", sa.Column("credential_id", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("webhooks", "credential_id")
    op.drop_column("webhooks", "credential_header")
