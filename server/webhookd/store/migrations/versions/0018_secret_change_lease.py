"""A short lease on a webhook's row for a change of its secret record in Vault (a rotation, a credential).

Such a change reads Vault's record, writes it changed, then commits the row; two of them at once, from
any processes, each wrote a record the other's row commit could then contradict (a committed secret
pushed out of the record, a row naming a credential Vault no longer held). The lease serialises them
without holding a database connection across the Vault calls (Vault may be slow or frozen):

- `webhooks.secret_change_token`: the holder's random token, NULL when nobody holds it. Taken with one
  conditional UPDATE before Vault is touched, cleared by the UPDATE that commits the change (which
  holds only while the token is still the holder's), or by the holder giving up.
- `webhooks.secret_change_until`: when the lease lapses by itself (database time), so a process that
  died holding it wedges the webhook no longer than that.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("secret_change_token", pg.UUID(as_uuid=True)))
    op.add_column("webhooks", sa.Column("secret_change_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("webhooks", "secret_change_until")
    op.drop_column("webhooks", "secret_change_token")
