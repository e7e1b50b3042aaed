"""Operations: held, skipped and discarded deliveries; lifecycle entries in the log; log consumers.

- deliveries.status may also be `held` (published while the webhook was paused), `skipped`
  (published while its owner had it disabled) and `discarded` (held, then discarded on resume).
  None is `pending`, so none is in the claim's partial index `deliveries_due`.
- attempts, the DeliveryLog, gains `kind` (`attempt`, or a webhook lifecycle change such as
  `webhook.paused`), its `reason` and `delivery_count`, so lifecycle entries share the log's
  (txid, seq) order and cursor; and the request and response headers of an attempt.
- delivery_log_consumers: a named DeliveryLog reader's acknowledged position, per tenant and app.
- events (tenant_id, id): ListEvents, newest first.

Columns added to a partitioned table apply to every partition; the CHECK constraints live on the
parent and so on every partition. Adding a column with a constant default rewrites nothing.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_DELIVERY_STATUSES = "('pending', 'succeeded', 'failed', 'held', 'skipped', 'discarded')"
_KINDS = (
    "('attempt', 'webhook.paused', 'webhook.resumed', 'webhook.disabled', 'webhook.enabled',"
    " 'webhook.secret_rotated', 'webhook.recovered', 'webhook.deleted', 'webhook.undeleted')"
)


def upgrade() -> None:
    op.drop_constraint("deliveries_status", "deliveries", type_="check")
    op.create_check_constraint("deliveries_status", "deliveries", f"status IN {_DELIVERY_STATUSES}")

    op.add_column("attempts", sa.Column("kind", sa.Text, nullable=False, server_default="attempt"))
    op.add_column("attempts", sa.Column("reason", sa.Text, nullable=False, server_default=""))
    op.add_column("attempts", sa.Column("delivery_count", sa.Integer, nullable=False, server_default="0"))
    op.add_column("attempts", sa.Column("request_headers", pg.JSONB))
    op.add_column("attempts", sa.Column("response_headers", pg.JSONB))
    op.create_check_constraint("attempts_kind", "attempts", f"kind IN {_KINDS}")

    op.create_index("events_tenant_id", "events", ["tenant_id", "id"])

    op.create_table(
        "delivery_log_consumers",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        # The app the consumer belongs to ('' for a person's tenant-wide consumer, as in
        # inbound_consumers): a key column, so two apps' consumers of one name are two consumers.
        sa.Column("app_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_log_consumers")
    op.drop_index("events_tenant_id", "events")
    op.execute("DELETE FROM attempts WHERE kind <> 'attempt'")
    op.drop_constraint("attempts_kind", "attempts", type_="check")
    for column in ("response_headers", "request_headers", "delivery_count", "reason", "kind"):
        op.drop_column("attempts", column)
    op.execute("DELETE FROM deliveries WHERE status IN ('held', 'skipped', 'discarded')")
    op.drop_constraint("deliveries_status", "deliveries", type_="check")
    op.create_check_constraint("deliveries_status", "deliveries", "status IN ('pending', 'succeeded', 'failed')")
