"""Routing and signing past event types: the event type catalog, channels, exact rate limits, FIFO order.

- `event_types`: a tenant's (or app's) catalog of event types, each name once per scope, with an
  optional JSON Schema and example kept as the JSON text the caller wrote.
- `webhooks.channels` (GIN, like event_types: a fan-out finds its targets in one indexed query),
  `webhooks.rate_limit_per_second` (0: none) and `webhooks.ordering` ('unordered' or 'fifo').
  `events.channels` records what an event was published on.
- `deliveries.fifo_seq`: the publish order of a delivery to a FIFO webhook (one number per publish,
  from `delivery_fifo_seq`), NULL for every other delivery, so the partial index `deliveries_fifo`
  holds only the pending deliveries of FIFO webhooks and costs other deliveries nothing.
- `webhook_rate_slots`: per rate-limited webhook, the next free send slot; only the claim, under its
  advisory lock, reads and writes it.
- `webhookd_fifo_head(delivery_id)`: whether no delivery of the same webhook published before it is
  still pending. The claim asks it of FIFO webhooks' candidates only. A PL/pgSQL function because its
  query over every partition is planned once per connection: written into the claim, the planner would
  plan it on every claim, for every webhook, FIFO or not.

The new columns have defaults (no channels, no limit, unordered), which existing rows take and which
rows written without them (SQL of tools and tests that predate this revision) still get.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _filled_columns() -> dict[str, tuple[sa.Column[object], ...]]:
    """Fresh Column objects each time: a Column belongs to the one table it is added to."""
    return {
        "webhooks": (
            sa.Column("channels", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
            sa.Column("rate_limit_per_second", sa.Integer, nullable=False, server_default="0"),
            sa.Column("ordering", sa.Text, nullable=False, server_default="unordered"),
        ),
        "events": (sa.Column("channels", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),),
    }


_FIFO_HEAD = """
CREATE FUNCTION webhookd_fifo_head(delivery text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    this record;
BEGIN
    SELECT webhook_id, fifo_seq INTO this FROM deliveries WHERE id = delivery;
    RETURN this.fifo_seq IS NULL OR NOT EXISTS (
        SELECT FROM deliveries p
        WHERE p.webhook_id = this.webhook_id AND p.status = 'pending'
          AND p.fifo_seq IS NOT NULL AND p.fifo_seq < this.fifo_seq);
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "event_types",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("schema_json", sa.Text),
        sa.Column("example_json", sa.Text),
        sa.Column("deprecated", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("updated_by", sa.Text),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.CheckConstraint("version > 0", name="event_types_version_positive"),
    )
    # One entry per name and scope; a publish looks its type up by exactly this.
    op.execute("CREATE UNIQUE INDEX event_types_name ON event_types (tenant_id, coalesce(app_id, ''), name)")
    op.create_index("event_types_tenant_id", "event_types", ["tenant_id", "id"])

    for table, columns in _filled_columns().items():
        for column in columns:
            op.add_column(table, column)
    op.create_check_constraint("webhooks_ordering", "webhooks", "ordering IN ('unordered', 'fifo')")
    op.create_check_constraint("webhooks_rate_limit", "webhooks", "rate_limit_per_second >= 0")
    op.create_index("webhooks_channels", "webhooks", ["channels"], postgresql_using="gin")

    op.execute("CREATE SEQUENCE delivery_fifo_seq")
    op.add_column("deliveries", sa.Column("fifo_seq", sa.BigInteger))
    op.execute(
        "CREATE INDEX deliveries_fifo ON deliveries (webhook_id, fifo_seq)"
        " WHERE status = 'pending' AND fifo_seq IS NOT NULL"
    )
    op.execute(_FIFO_HEAD)
    op.create_table(
        "webhook_rate_slots",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("next_slot_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The few webhooks whose deliveries the claimer may hold back (store/deliveries.py _HOLD_BACK).
    op.execute("CREATE INDEX webhooks_routed ON webhooks (id) WHERE rate_limit_per_second > 0 OR ordering = 'fifo'")


def downgrade() -> None:
    op.drop_index("webhooks_routed", "webhooks")
    op.drop_table("webhook_rate_slots")
    op.execute("DROP FUNCTION webhookd_fifo_head(text)")
    op.drop_index("deliveries_fifo", "deliveries")
    op.drop_column("deliveries", "fifo_seq")
    op.execute("DROP SEQUENCE delivery_fifo_seq")
    op.drop_index("webhooks_channels", "webhooks")
    op.drop_constraint("webhooks_rate_limit", "webhooks", type_="check")
    op.drop_constraint("webhooks_ordering", "webhooks", type_="check")
    for table, columns in _filled_columns().items():
        for column in columns:
            op.drop_column(table, column.name)
    op.drop_table("event_types")
