"""Webhooks and server keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("app_id", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("signature_scheme", sa.Text, nullable=False),
        sa.Column("headers", pg.JSONB, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("retry_max_attempts", sa.Integer, nullable=False),
        sa.Column("retry_backoff", sa.Text, nullable=False),
        sa.Column("retry_timeout_ms", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Text, nullable=False),
        sa.Column("application_id", sa.Text, nullable=False),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_type", sa.Text, nullable=False),
        sa.Column("vault_path", sa.Text, nullable=False),
        sa.Column("secret_fingerprint", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("updated_by", sa.Text),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_by", sa.Text),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("last_delivery_at", sa.DateTime(timezone=True)),
        sa.Column("last_delivery_status", sa.Text),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("direction IN ('outbound', 'inbound')", name="webhooks_direction"),
        sa.CheckConstraint("version > 0", name="webhooks_version_positive"),
    )
    # List pages walk (tenant_id, id) in order; ids are ULIDs so this is creation order.
    op.create_index("webhooks_tenant_id", "webhooks", ["tenant_id", "id"])
    op.create_index("webhooks_event_types", "webhooks", ["event_types"], postgresql_using="gin")
    op.create_index("webhooks_tags", "webhooks", ["tags"], postgresql_using="gin")
    op.create_table(
        "server_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("key", sa.LargeBinary, nullable=False),
    )
    # Generated here, not by pgcrypto, so the migration needs no extension.
    op.get_bind().execute(
        sa.text("INSERT INTO server_keys (name, key) VALUES ('page_token', :key)"),
        {"key": secrets.token_bytes(32)},
    )


def downgrade() -> None:
    op.drop_table("server_keys")
    op.drop_table("webhooks")
