"""Deliveries, attempts and inbound receipts partitioned by week, so they stay fast as history grows.

Declarative range partitioning (store/partitions.py has the names, bounds and the reasons):
deliveries by `id` (a ULID, so a range of ids is a range of creation time, and every write by id
prunes to one partition), attempts by `occurred_at`, inbound_events by `received_at`; one
partition per week, and a default partition for any row no week covers. Retention then drops a
week whole instead of deleting its rows.

What partitioning changes in the keys (a primary key or unique index must include the partition key):
- deliveries keeps PRIMARY KEY (id). Its `id` is COLLATE "C", so ids compare bytewise, as the ULID
  bounds need, whatever the database's collation.
- attempts and inbound_events: PRIMARY KEY (seq) becomes (seq, occurred_at) / (seq, received_at);
  `seq` is still an identity, unique by construction, continued from where the old sequence was.
  Their UNIQUE (id) indexes go: ids are ULIDs (80 random bits) and nothing looks either up by id.
- inbound_events_message (webhook_id, message_id), the duplicate check of accepted receipts, can no
  longer be unique (it would be unique per week only). It stays, with its WHERE clause, as a plain
  index, and store/inbound.py enforces the uniqueness across every partition: under an advisory lock
  per (webhook, message id), the insert happens only when no accepted receipt of the message exists.

Existing rows are copied in this migration's transaction, into the weeks they belong to (created
for every week that holds rows, and this week and the next ones); the indexes are built after the
copy, in one pass each.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from webhookd.store import partitions

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TXID = sa.text("(pg_current_xact_id()::text::bigint)")
_ASIDE = "_0006"


def _deliveries(id_type: sa.types.TypeEngine[str]) -> list[sa.Column[Any]]:
    return [
        sa.Column("id", id_type, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("webhook_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("lease_token", sa.Text),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_outcome", sa.Text),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    ]


def _attempts() -> list[sa.Column[Any]]:
    return [
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("txid", sa.BigInteger, nullable=False, server_default=_TXID),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("webhook_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("response_excerpt", sa.Text, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _inbound_events() -> list[sa.Column[Any]]:
    return [
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("txid", sa.BigInteger, nullable=False, server_default=_TXID),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column(
            "webhook_id",
            sa.Text,
            sa.ForeignKey("webhooks.id", ondelete="CASCADE", name="inbound_events_webhook_id_fkey"),
            nullable=False,
        ),
        sa.Column("message_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    ]


_STATUS_CHECKS = {
    "deliveries": sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="deliveries_status"),
    "inbound_events": sa.CheckConstraint("status IN ('accepted', 'rejected')", name="inbound_events_status"),
}

# The indexes every query uses, spelled as migrations 0002-0005 left them (the partial ones' WHERE
# clauses are what the claim, the in-flight count and the duplicate check match).
_INDEXES = (
    "CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX deliveries_leased ON deliveries (webhook_id, lease_expires_at)"
    " WHERE status = 'pending' AND lease_token IS NOT NULL",
    "CREATE INDEX deliveries_event ON deliveries (event_id)",
    "CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at, id)",
    "CREATE INDEX deliveries_webhook_status ON deliveries (webhook_id, status, created_at)",
    "CREATE INDEX attempts_delivery ON attempts (delivery_id, seq)",
    "CREATE INDEX attempts_occurred_at ON attempts (occurred_at)",
    "CREATE INDEX attempts_tenant_log ON attempts (tenant_id, txid, seq)",
    "CREATE INDEX attempts_webhook_log ON attempts (webhook_id, txid, seq)",
    "CREATE INDEX inbound_events_tenant_log ON inbound_events (tenant_id, txid, seq)",
    "CREATE INDEX inbound_events_webhook_log ON inbound_events (webhook_id, txid, seq)",
    "CREATE INDEX inbound_events_received_at ON inbound_events (received_at)",
)
_MESSAGE_INDEX = (
    "CREATE {unique} INDEX inbound_events_message ON inbound_events (webhook_id, message_id)"
    " WHERE status = 'accepted' AND message_id IS NOT NULL"
)
_PRIMARY_KEYS = {"deliveries": ["id"], "attempts": ["seq", "occurred_at"], "inbound_events": ["seq", "received_at"]}


def _set_aside(table: str) -> str:
    """Renames a table with its indexes and identity sequence, so the new table can take the names."""
    bind = op.get_bind()
    aside = table + _ASIDE
    op.rename_table(table, aside)
    indexes = bind.execute(
        sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"),
        {"t": aside},
    ).scalars()
    for index in list(indexes):
        op.execute(f'ALTER INDEX "{index}" RENAME TO "{index}{_ASIDE}"')
    sequence = _seq_sequence(aside)
    if sequence is not None:
        op.execute(f'ALTER SEQUENCE {sequence} RENAME TO "{aside}_seq_seq"')
    return aside


def _seq_sequence(table: str) -> str | None:
    """The identity sequence of the table's `seq` column, if it has one."""
    return (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT pg_get_serial_sequence(:t, attname) FROM pg_attribute"
                " WHERE attrelid = CAST(:t AS regclass) AND attname = 'seq'"
            ),
            {"t": table},
        )
        .scalar()
    )


def _next_seq(aside: str) -> int | None:
    """Where the old table's identity would have continued (above every seq, removed ones included)."""
    sequence = _seq_sequence(aside)
    if sequence is None:
        return None
    row = op.get_bind().execute(sa.text(f"SELECT last_value, is_called FROM {sequence}")).one()
    return int(row.last_value) + 1 if row.is_called else int(row.last_value)


def _copy(table: str, aside: str, columns: list[sa.Column[Any]]) -> None:
    names = ", ".join(column.name for column in columns)
    op.execute(f"INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM {aside}")
    next_seq = _next_seq(aside)
    op.drop_table(aside)
    if next_seq is not None:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN seq RESTART WITH {next_seq}")


def _weeks_with_rows(table: partitions.PartitionedTable, aside: str) -> set[partitions.Period]:
    # Deliveries are keyed by id but read here by created_at: the two are the same instant give or
    # take a millisecond, and a row whose id falls in a week without a partition goes to the default.
    starts = op.get_bind().execute(
        sa.text(f"SELECT DISTINCT date_bin(:width, {table.time_column}, :origin) FROM {aside}"),
        {"width": partitions.WIDTH, "origin": partitions.ORIGIN},
    )
    return {partitions.Period.of(start) for start in starts.scalars()}


def upgrade() -> None:
    now = datetime.now(UTC)
    definitions: dict[str, Callable[[], list[sa.Column[Any]]]] = {
        "deliveries": lambda: _deliveries(sa.Text(collation="C")),
        "attempts": _attempts,
        "inbound_events": _inbound_events,
    }
    for table in partitions.TABLES:
        aside = _set_aside(table.name)
        columns = definitions[table.name]()
        checks = [_STATUS_CHECKS[table.name]] if table.name in _STATUS_CHECKS else []
        op.create_table(table.name, *columns, *checks, postgresql_partition_by=f"RANGE ({table.key})")
        weeks = _weeks_with_rows(table, aside) | set(partitions.Period.of(now).and_following(partitions.AHEAD))
        for week in sorted(weeks):
            op.execute(table.create_statement(week))
        op.execute(table.default_statement())
        _copy(table.name, aside, definitions[table.name]())
        op.create_primary_key(f"{table.name}_pkey", table.name, _PRIMARY_KEYS[table.name])
    for statement in _INDEXES:
        op.execute(statement)
    op.execute(_MESSAGE_INDEX.format(unique=""))


def downgrade() -> None:
    definitions: dict[str, Callable[[], list[sa.Column[Any]]]] = {
        "deliveries": lambda: _deliveries(sa.Text()),
        "attempts": _attempts,
        "inbound_events": _inbound_events,
    }
    for table in partitions.TABLES:
        aside = _set_aside(table.name)
        columns = definitions[table.name]()
        checks = [_STATUS_CHECKS[table.name]] if table.name in _STATUS_CHECKS else []
        op.create_table(table.name, *columns, *checks)
        _copy(table.name, aside, definitions[table.name]())
        op.create_primary_key(f"{table.name}_pkey", table.name, _PRIMARY_KEYS[table.name][:1])
    op.create_unique_constraint("attempts_id_key", "attempts", ["id"])
    op.create_unique_constraint("inbound_events_id_key", "inbound_events", ["id"])
    for statement in _INDEXES:
        op.execute(statement)
    op.execute(_MESSAGE_INDEX.format(unique="UNIQUE"))
