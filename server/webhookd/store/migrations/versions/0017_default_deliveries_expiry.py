"""The partial index `deliveries_default_finished`: the default partition's finished deliveries, by
creation time.

Retention deletes the default partition's finished deliveries older than its cutoff in batches
(store/retention.py), and no index of deliveries leads with created_at: each batch scanned the whole
default partition, whose rows are mostly pending deliveries kept from dropped weeks and weeks never
created. The weeks' partitions do not need it: they go whole. The default partitions of attempts and
inbound_events have theirs already (attempts_occurred_at, inbound_events_received_at).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The predicate is retention's own (`status <> 'pending'`, a literal there too): the planner
    # uses a partial index only for a query whose WHERE implies it.
    op.execute("CREATE INDEX deliveries_default_finished ON deliveries_default (created_at) WHERE status <> 'pending'")


def downgrade() -> None:
    op.drop_index("deliveries_default_finished", "deliveries_default")
