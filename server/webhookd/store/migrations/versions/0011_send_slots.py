"""A rate-limited webhook's send slots kept on the deliveries they were given to.

- `deliveries.send_slot_at`: the send slot the claim gave a delivery of a rate-limited webhook (NULL for
  every other delivery), with the partial index `deliveries_send_slots` holding only those.
- `webhookd_next_slot(webhook, rate)`: the webhook's next free slot, 1/rate after the last one given.
  A PL/pgSQL function for the reason `webhookd_fifo_head` is one (migration 0010): its query over every
  partition is planned once per connection and runs only for rate-limited candidates, where written
  into the claim every claim would set it up for every partition.
- `webhook_rate_slots` goes: the claim wrote it on every run, a data-modifying CTE that PostgreSQL runs
  even with no row to write (2% of a claim of webhooks that use no rate limit).

Slots handed out before the upgrade are in the dropped table only, so for the second after it a
rate-limited webhook's next slot starts from the upgrade's time.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_NEXT_SLOT = """
CREATE FUNCTION webhookd_next_slot(webhook text, rate integer) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT max(send_slot_at) FROM deliveries WHERE webhook_id = webhook AND send_slot_at IS NOT NULL)
        + make_interval(secs => 1 / rate::float8);
END
$$
"""


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("send_slot_at", sa.DateTime(timezone=True)))
    op.execute(
        "CREATE INDEX deliveries_send_slots ON deliveries (webhook_id, send_slot_at) WHERE send_slot_at IS NOT NULL"
    )
    op.execute(_NEXT_SLOT)
    op.drop_table("webhook_rate_slots")


def downgrade() -> None:
    op.create_table(
        "webhook_rate_slots",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("next_slot_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("DROP FUNCTION webhookd_next_slot(text, integer)")
    op.drop_index("deliveries_send_slots", "deliveries")
    op.drop_column("deliveries", "send_slot_at")
