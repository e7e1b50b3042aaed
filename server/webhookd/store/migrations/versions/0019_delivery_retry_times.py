"""`deliveries.retry_at`: a delivery's own earliest time, kept apart from `next_attempt_at`.

`next_attempt_at` is when the claim may take a delivery; the claimer also moves it later to hold a
delivery back (behind a FIFO head, or until its rate slot: store/deliveries.py `_HOLD_BACK`). Making
what it held back due again (a FIFO head's end, a change of ordering or rate limit) could not tell a
held-back delivery from one waiting for its retry, and made a head waiting an hour for its retry due
at once when a redelivered delivery published before it ended. `retry_at` is when the delivery's
retry is due (written with each attempt recorded and with each release, NULL once it is queued again):
what was held back goes back to it, never earlier. The claim does not read it.

Pending deliveries already attempted and waiting to be due keep their time as their retry's: before
this revision, neither could be told apart, and a retry was taken to wait for its own time. Deliveries
never attempted are left NULL: they were taken to be held back.

Revision ID: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: only the catalog changes, however many rows the partitions hold.
    op.add_column("deliveries", sa.Column("retry_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE deliveries SET retry_at = next_attempt_at"
        " WHERE status = 'pending' AND attempts > 0 AND lease_token IS NULL AND next_attempt_at > now()"
    )


def downgrade() -> None:
    op.drop_column("deliveries", "retry_at")
