"""SQLAlchemy Core tables. The Alembic migrations create them; these describe them to queries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

webhooks = sa.Table(
    "webhooks",
    metadata,
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
    sa.Column("channels", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("rate_limit_per_second", sa.Integer, nullable=False),
    sa.Column("ordering", sa.Text, nullable=False),
    # The delivery credential's header name and the random id it was last set under ('' when none);
    # its value is in Vault (migration 0012).
    sa.Column("credential_header", sa.Text, nullable=False, server_default=""),
    sa.Column("credential_id", sa.Text, nullable=False, server_default=""),
    # The key a keyed create named itself with (held 24 hours, then NULL once reused) and its
    # request's fingerprint, to tell a retry from a reuse (migration 0014).
    sa.Column("idempotency_key", sa.Text),
    sa.Column("idempotency_request", sa.Text),
    # The lease a change of the webhook's secret record in Vault holds while it runs: its holder's
    # token and when it lapses by itself (migration 0018).
    sa.Column("secret_change_token", pg.UUID(as_uuid=True)),
    sa.Column("secret_change_until", sa.DateTime(timezone=True)),
    # When the record's first previous secret stops signing, for the workers' sweep (migration 0021).
    sa.Column("secret_overlap_ends_at", sa.DateTime(timezone=True)),
)

# Keys the service derives from, shared by every process on the database (page-token signing).
server_keys = sa.Table(
    "server_keys",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("app_id", sa.Text),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("target_webhook_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channels", pg.ARRAY(sa.Text), nullable=False),
)

# A tenant's (or app's) event type catalog; schema and example are JSON text as the caller wrote it.
event_types = sa.Table(
    "event_types",
    metadata,
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
)

# deliveries, attempts and inbound_events are partitioned by week (store/partitions.py): deliveries
# by id (bytewise, hence "C"), attempts by occurred_at, inbound_events by received_at.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Text(collation="C"), primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("app_id", sa.Text),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("webhook_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    # When the claim may take it: its retry's time, a lease's end, or later where the claimer holds it back.
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("lease_token", sa.Text),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("last_outcome", sa.Text),
    sa.Column("last_http_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    # Publish order, for deliveries to FIFO webhooks only (NULL otherwise).
    sa.Column("fifo_seq", sa.BigInteger),
    # The send slot the claim gave a delivery of a rate-limited webhook (NULL otherwise).
    sa.Column("send_slot_at", sa.DateTime(timezone=True)),
    # A test event's delivery (SendTestEvent): RecoverWebhook leaves it alone (migration 0015).
    sa.Column("is_test", sa.Boolean, nullable=False, server_default=sa.false()),
    # Its retry's time, which holding it back never moves (NULL: none, due since queued; migration 0019).
    sa.Column("retry_at", sa.DateTime(timezone=True)),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    # The writing transaction's id: rows become readable in (txid, seq) order once every older
    # transaction has finished, which makes the log gapless for followers.
    sa.Column("txid", sa.BigInteger, nullable=False),
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
    sa.Column("occurred_at", sa.DateTime(timezone=True), primary_key=True),
    # `attempt`, or a lifecycle change of the webhook (domain.statuses.LogKind), with its reason and
    # how many deliveries it concerned.
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("delivery_count", sa.Integer, nullable=False),
    sa.Column("request_headers", pg.JSONB),
    sa.Column("response_headers", pg.JSONB),
)

inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("txid", sa.BigInteger, nullable=False),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("app_id", sa.Text),
    sa.Column("webhook_id", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary),
    sa.Column("received_at", sa.DateTime(timezone=True), primary_key=True),
)

inbound_consumers = sa.Table(
    "inbound_consumers",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    # '' for a caller without an app: the scope's app, as a key column (never NULL).
    sa.Column("app_id", sa.Text, primary_key=True, server_default=""),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("txid", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

inbound_buckets = sa.Table(
    "inbound_buckets",
    metadata,
    sa.Column("webhook_id", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Each outbound webhook's token bucket of test sends (SendTestEvent; migration 0016).
ping_buckets = sa.Table(
    "ping_buckets",
    metadata,
    sa.Column("webhook_id", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

stream_leases = sa.Table(
    "stream_leases",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# A named DeliveryLog reader's acknowledged position; `app_id` is '' for a tenant-wide consumer.
delivery_log_consumers = sa.Table(
    "delivery_log_consumers",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("app_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("txid", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
