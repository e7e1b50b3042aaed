"""Inbound consumer positions belong to the caller's whole scope: tenant and app.

Keyed by tenant and name only, an app-scoped caller could acknowledge (and so move) a consumer of
the same name that another app of its tenant reads with. `app_id` is '' for a caller without an app
(a person, who reads the whole tenant), since a primary key column cannot be NULL. Positions stored
before this migration were shared by every caller of the tenant; they stay with the tenant-wide
scope (''), so an app's consumer starts again from the oldest retained receipt: read again, never
skipped (consumers are at least once already).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_consumers", sa.Column("app_id", sa.Text, nullable=False, server_default=""))
    op.drop_constraint("inbound_consumers_pkey", "inbound_consumers", type_="primary")
    op.create_primary_key("inbound_consumers_pkey", "inbound_consumers", ["tenant_id", "app_id", "name"])


def downgrade() -> None:
    # Several apps may hold the same name by now; the furthest position is the one kept.
    op.execute(
        "DELETE FROM inbound_consumers c USING inbound_consumers d"
        " WHERE c.tenant_id = d.tenant_id AND c.name = d.name AND (c.txid, c.seq, c.app_id) < (d.txid, d.seq, d.app_id)"
    )
    op.drop_constraint("inbound_consumers_pkey", "inbound_consumers", type_="primary")
    op.create_primary_key("inbound_consumers_pkey", "inbound_consumers", ["tenant_id", "name"])
    op.drop_column("inbound_consumers", "app_id")
