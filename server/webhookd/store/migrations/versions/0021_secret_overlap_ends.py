"""When a webhook's secret record next holds a previous secret whose overlap has ended.

A rotation keeps the secret it replaced in Vault's record for the overlap (24 h by default), and nothing
took it out once the overlap ended but the webhook's next secret change, which may never come: a secret
that signs nothing stayed stored. The workers' sweep (services/ended_overlaps.py) takes it out; this is
how it finds the records to look at without reading every one from Vault:

- `webhooks.secret_overlap_ends_at`: when the first of the record's previous secrets stops signing
  (domain/secret_rotation.py `next_overlap_end`), set by the row update that commits a rotation; NULL
  when the record holds none. The sweep claims rows whose time has come by moving it a few minutes on,
  and sets it to the next one (or NULL) once Vault's record is written without the ended secrets. It is
  a mark, never the truth: Vault's record is, so a mark early or stale costs one read of it.
- `webhooks_secret_overlap_ends`: the sweep's query takes the earliest marks; partial, since most
  webhooks hold no previous secret most of the time.

Rows written before this revision may hold ended secrets that no rotation marked: they are all marked
due now, so the sweep looks at each once, in its batches.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("secret_overlap_ends_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE webhooks SET secret_overlap_ends_at = now()")
    op.execute(
        "CREATE INDEX webhooks_secret_overlap_ends ON webhooks (secret_overlap_ends_at)"
        " WHERE secret_overlap_ends_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("webhooks_secret_overlap_ends", "webhooks")
    op.drop_column("webhooks", "secret_overlap_ends_at")
